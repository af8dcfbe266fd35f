cat("before the error\n")
broken <- function( {
}
