#include "io/npy.h"

#include <cstring>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "io/atomic_file.h"

namespace dsv3 {

void write_npy_f32(const std::string& path, std::span<const float> data, const std::vector<int64_t>& shape) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) dict += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? ", " : "");
  dict += "), }";
  // magic(6) + version(2) + header_len(2) + dict + padding + '\n' is a multiple of 64.
  size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict.push_back('\n');
  write_file_atomic(path, [&](std::FILE* f) {
    const uint8_t magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    write_all(f, magic, 8, path);
    const uint8_t len[2] = {uint8_t(dict.size() & 0xff), uint8_t(dict.size() >> 8)};
    write_all(f, len, 2, path);
    write_all(f, dict.data(), dict.size(), path);
    write_all(f, data.data(), data.size_bytes(), path);
  });
}

NpyArray read_npy_f32(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  DSV3_CHECK(f.good(), path, ": cannot open");
  std::string bytes((std::istreambuf_iterator<char>(f)), {});
  DSV3_CHECK(bytes.size() >= 10 && bytes.compare(0, 6, "\x93NUMPY") == 0, path, ": not a .npy file");
  const size_t hlen = uint8_t(bytes[8]) | (size_t(uint8_t(bytes[9])) << 8);
  DSV3_CHECK(bytes[6] == 1 && 10 + hlen <= bytes.size(), path, ": unsupported .npy header");
  const std::string dict = bytes.substr(10, hlen);
  DSV3_CHECK(dict.find("'<f4'") != std::string::npos && dict.find("False") != std::string::npos, path,
             ": only float32 C-order arrays are supported");
  NpyArray a;
  const size_t open = dict.find('(', dict.find("shape")), close = dict.find(')', open);
  DSV3_CHECK(open != std::string::npos && close != std::string::npos, path, ": no shape in header");
  std::string dims = dict.substr(open + 1, close - open - 1);
  int64_t n = 1;
  for (size_t p = 0; p < dims.size();) {
    while (p < dims.size() && (dims[p] == ' ' || dims[p] == ',')) ++p;
    if (p >= dims.size()) break;
    size_t q = p;
    while (q < dims.size() && std::isdigit(uint8_t(dims[q]))) ++q;
    DSV3_CHECK(q > p, path, ": bad shape in header");
    a.shape.push_back(std::stoll(dims.substr(p, q - p)));
    n *= a.shape.back();
    p = q;
  }
  DSV3_CHECK(bytes.size() - 10 - hlen == size_t(n) * 4, path, ": data size does not match the shape");
  a.data.resize(n);
  if (n > 0) std::memcpy(a.data.data(), bytes.data() + 10 + hlen, size_t(n) * 4);
  return a;
}

}  // namespace dsv3
