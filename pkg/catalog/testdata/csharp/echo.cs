using System;

public static class Program
{
    public static void Main()
    {
        string line = Console.ReadLine();
        Console.WriteLine(line ?? "");
    }
}
