import * as fs from "fs";

const input: string = fs.readFileSync(0, "utf8");
const end: number = input.indexOf("\n");
console.log(end === -1 ? input : input.slice(0, end));
