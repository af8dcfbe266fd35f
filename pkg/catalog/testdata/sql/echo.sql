-- .import --ascii splits records only at ASCII record separators, so all of
-- stdin becomes one row. The query prints its first line.
CREATE TABLE input(text TEXT);
.import --ascii /dev/stdin input
SELECT substr(text, 1, instr(text || char(10), char(10)) - 1) FROM input;
