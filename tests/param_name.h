// GoogleTest parameter names from strings: anything but letters and digits becomes '_'
// (test names may not contain '-' or '.').
#pragma once
#include <cctype>
#include <string>

namespace dsv3::test {

struct ParamName {
  template <typename Info>
  std::string operator()(const Info& info) const {
    std::string s = info.param;
    for (char& ch : s)
      if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
    return s;
  }
};

}  // namespace dsv3::test
