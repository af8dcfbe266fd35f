print("before the error")
local function broken(
end
