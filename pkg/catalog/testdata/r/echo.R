line <- readLines(file("stdin"), n = 1)
cat(if (length(line) == 0) "" else line, "\n", sep = "")
