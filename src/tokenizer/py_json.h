// JSON text as Python's json.dumps(x, ensure_ascii=False) writes it: the `tojson` filter of
// Hugging Face's chat-template environment, which the DeepSeek-V3.1 template applies to tool-call
// arguments. Rendering a prompt byte for byte as the model was trained needs this exact form.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace dsv3 {

// Separators ", " and ": ", keys in their given order (hence ordered_json), non-ASCII kept,
// control characters escaped as \n, \t, ... or \u00xx, floats in Python's repr (shortest digits,
// "1.0", "1e-05", "1e+16"). Integers beyond 64 bits were already doubles when parsed.
std::string python_json_dumps(const nlohmann::ordered_json& v);

}  // namespace dsv3
