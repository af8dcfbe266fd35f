local line = io.read("L") or ""
io.write((line:gsub("\n$", "")), "\n")
