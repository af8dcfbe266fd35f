let () =
  let line = try input_line stdin with End_of_file -> "" in
  print_endline line
