program CompileError;

begin
  WriteLn('missing semicolon')
  WriteLn('second line');
end.
