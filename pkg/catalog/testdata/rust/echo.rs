use std::io::{self, BufRead};

fn main() {
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line).expect("read stdin");
    println!("{}", line.strip_suffix('\n').unwrap_or(&line));
}
