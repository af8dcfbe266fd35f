console.log("bye");
process.exitCode = 3;
