let () =
  let x = in
  print_endline x
