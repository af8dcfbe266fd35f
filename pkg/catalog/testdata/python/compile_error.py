print("before the error")

def broken(:
    pass
