program ExitCode;

begin
  WriteLn('bye');
  Halt(3);
end.
