#include <iostream>

int main() {
    std::cout << "bye\n";
    return 3;
}
