let () =
  print_endline "bye";
  exit 3
