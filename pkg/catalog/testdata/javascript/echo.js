const input = require("fs").readFileSync(0, "utf8");
const end = input.indexOf("\n");
console.log(end === -1 ? input : input.slice(0, end));
