program compile_error
  implicit none
  print *, 'missing paren'
  call broken(
end program compile_error
