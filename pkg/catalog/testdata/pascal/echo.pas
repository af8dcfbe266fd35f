program Echo;

var
  line: AnsiString;

begin
  line := '';
  if not Eof(Input) then
    ReadLn(line);
  WriteLn(line);
end.
