import sys

line = sys.stdin.readline()
print(line.rstrip("\n"))
