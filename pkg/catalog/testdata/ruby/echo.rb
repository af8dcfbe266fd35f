line = $stdin.gets
puts(line ? line.chomp("\n") : "")
