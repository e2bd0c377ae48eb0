// PCRE2 glue: compilation with JIT, per-thread match data and JIT stacks, and the search loop.
#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace dsv3 {
namespace {

// White_Space (PropList.txt), written for use inside a character class.
constexpr const char* kWhiteSpace =
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

// Per-thread scratch, so one compiled Regex can serve many threads without locking.
struct Scratch {
  pcre2_match_data* match = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* stack = nullptr;

  Scratch() {
    match = pcre2_match_data_create(1, nullptr);  // only the whole match is needed
    context = pcre2_match_context_create(nullptr);
    // The default 32 KiB JIT stack can overflow on very long runs of one character class;
    // 8 MiB covers words of many megabytes.
    stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (!match || !context || !stack) fail("PCRE2: out of memory creating match data");
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~Scratch() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(match);
  }
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

std::string translate_onig_pattern(std::string_view p) {
  std::string out;
  bool in_class = false;
  bool class_start = false;  // just after '[' or '[^', where ']' is a literal
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[++i];
      if (e == 's' || e == 'S') {
        if (in_class) {
          DSV3_CHECK(e == 's', "regex: \\S inside a character class is not supported: ", p);
          out += kWhiteSpace;
        } else {
          out += e == 's' ? "[" : "[^";
          out += kWhiteSpace;
          out += "]";
        }
      } else {
        out += c;
        out += e;
      }
      class_start = false;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      class_start = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      continue;
    }
    if (in_class && c == ']' && !class_start) in_class = false;
    class_start = false;
    out += c;
  }
  return out;
}

Regex::Regex(std::string_view pattern) : pattern_(pattern) {
  const std::string translated = translate_onig_pattern(pattern);
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                    PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
  if (!code) fail("regex ", pattern, ": ", pcre2_message(err), " at offset ", offset);
  code_ = code;
  // JIT is an optimisation: without it (e.g. an unsupported CPU) the interpreter gives the
  // same matches.
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

Regex::Regex(Regex&& o) noexcept : pattern_(std::move(o.pattern_)), code_(o.code_), jit_(o.jit_) {
  o.code_ = nullptr;
}

Regex& Regex::operator=(Regex&& o) noexcept {
  std::swap(pattern_, o.pattern_);
  std::swap(code_, o.code_);
  std::swap(jit_, o.jit_);
  return *this;
}

void Regex::find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const {
  auto* code = static_cast<pcre2_code*>(code_);
  Scratch& s = scratch();
  const auto* data = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t pos = 0;
  while (pos <= subject.size()) {
    const int rc =
        jit_ ? pcre2_jit_match(code, data, subject.size(), pos, 0, s.match, s.context)
             : pcre2_match(code, data, subject.size(), pos, PCRE2_NO_UTF_CHECK, s.match, s.context);
    if (rc == PCRE2_ERROR_NOMATCH) return;
    if (rc < 0) fail("regex ", pattern_, ": matching failed: ", pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.match);
    out.emplace_back(ov[0], ov[1]);
    if (ov[1] > ov[0]) {
      pos = ov[1];
    } else {
      if (ov[1] >= subject.size()) return;
      // Step over one whole character, never into the middle of one.
      pos = ov[1] + 1;
      while (pos < subject.size() && (static_cast<unsigned char>(subject[pos]) & 0xC0) == 0x80) {
        ++pos;
      }
    }
  }
}

}  // namespace dsv3
