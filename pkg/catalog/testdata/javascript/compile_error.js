console.log("before the error");
function broken( {
}
