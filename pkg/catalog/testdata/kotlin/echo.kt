fun main() {
    println(readLine() ?: "")
}
