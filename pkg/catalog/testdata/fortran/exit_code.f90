program exit_code
  implicit none
  write (*, '(A)') 'bye'
  stop 3, quiet=.true.
end program exit_code
