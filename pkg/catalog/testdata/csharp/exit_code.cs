using System;

public static class Program
{
    public static int Main()
    {
        Console.WriteLine("bye");
        return 3;
    }
}
