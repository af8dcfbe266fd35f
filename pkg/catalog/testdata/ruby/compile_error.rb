puts "before the error"
def broken(
  1 +
end
