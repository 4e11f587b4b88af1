// dimix::Error and DIMIX_CHECK: the one way library code reports bad input.
//
// DIMIX_CHECK(cond, "op: expected ...", a, ", got ", b) throws dimix::Error
// whose message is the concatenation of the arguments (anything with an
// operator<<). Library code never aborts or exits; binaries catch Error at
// main and print its one line.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>
#include <cstdint>

namespace dimix {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// "[2, 3, 4]": shapes in error messages and printing.
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace dimix

#define DIMIX_CHECK(cond, ...)                                     \
  do {                                                             \
    if (!(cond)) throw ::dimix::Error(::dimix::detail::concat(__VA_ARGS__)); \
  } while (0)

#define DIMIX_FAIL(...) throw ::dimix::Error(::dimix::detail::concat(__VA_ARGS__))
