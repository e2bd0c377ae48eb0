// Error reporting: exceptions at boundaries (bad files, bad flags), with messages built from parts.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace dsv3 {

// The one exception type user-facing code catches: its what() is a complete, single-line message.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str_cat(std::forward<Args>(args)...));
}

}  // namespace dsv3

// Checks a condition on user-controlled input; throws dsv3::Error with the given message parts.
#define DSV3_CHECK(cond, ...)                 \
  do {                                        \
    if (!(cond)) ::dsv3::fail(__VA_ARGS__);   \
  } while (0)

// Internal invariant (a bug if false). Kept in release builds: throws with file and line.
#define DSV3_ASSERT(cond)                                                               \
  do {                                                                                  \
    if (!(cond)) ::dsv3::fail("internal error: ", #cond, " (", __FILE__, ":", __LINE__, ")"); \
  } while (0)
