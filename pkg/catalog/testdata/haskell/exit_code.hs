import System.Exit (ExitCode (ExitFailure), exitWith)

main :: IO ()
main = do
  putStrLn "bye"
  exitWith (ExitFailure 3)
