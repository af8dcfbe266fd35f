// A type error: tsc rejects the program before it runs.
const count: number = "three";
console.log(count);
