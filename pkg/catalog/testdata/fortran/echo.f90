program echo
  implicit none
  character(len=256) :: chunk
  character(len=:), allocatable :: line
  integer :: status, size_read

  ! Non-advancing reads keep trailing blanks and lines of any length.
  line = ''
  do
    read (*, '(A)', advance='no', iostat=status, size=size_read) chunk
    line = line // chunk(1:size_read)
    if (status /= 0) exit
  end do
  write (*, '(A)') line
end program echo
