#include "engine/json_automaton.h"

#include <algorithm>
#include <cstring>

namespace dsv3 {

namespace {

using Kind = JsonNode::Kind;

// Phases, per kind. A parent moves to its "after the value" phase before it pushes the value,
// so a finished value simply pops.
enum RootPhase : uint8_t { R_START, R_DONE };
enum ObjectPhase : uint8_t { O_START, O_FIRST, O_KEY, O_COLON, O_VALUE, O_AFTER_VALUE, O_NEXT_KEY };
enum ArrayPhase : uint8_t { A_START, A_FIRST, A_AFTER_VALUE, A_NEXT };
// S_PAIR_*: the \uDCxx that must follow a \uD8xx-\uDBxx escape (a UTF-16 surrogate pair).
enum StringPhase : uint8_t { S_START, S_BODY, S_ESC, S_HEX, S_UTF8, S_PAIR_BSLASH, S_PAIR_U, S_PAIR_HEX };
enum NumberPhase : uint8_t { N_START, N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_EXP, N_EXP_SIGN, N_EXP_DIGITS };
enum LiteralPhase : uint8_t { L_MATCH };

// Whitespace the automaton generates: no carriage returns (see JsonFrame::ws for the bounds).
bool is_ws(uint8_t b) { return b == ' ' || b == '\t' || b == '\n'; }
constexpr uint8_t kNewlineSeen = 0x80;  // JsonFrame::ws: the run already has its one newline
bool is_digit(uint8_t b) { return b >= '0' && b <= '9'; }
bool is_hex(uint8_t b) { return is_digit(b) || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F'); }

// Allowed range of the next UTF-8 continuation byte (RFC 3629 table), by code in JsonFrame::y.
constexpr uint8_t kContLo[] = {0x80, 0xA0, 0x80, 0x90, 0x80};
constexpr uint8_t kContHi[] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};

// Continuation bytes after lead byte b and the range code of the first one; {0, 0} if b is not
// a valid lead byte of a multi-byte character.
std::pair<uint8_t, uint8_t> utf8_lead(uint8_t b) {
  if (b >= 0xC2 && b <= 0xDF) return {1, 0};
  if (b == 0xE0) return {2, 1};
  if (b == 0xED) return {2, 2};
  if (b >= 0xE1 && b <= 0xEF) return {2, 0};
  if (b == 0xF0) return {3, 3};
  if (b >= 0xF1 && b <= 0xF3) return {3, 0};
  if (b == 0xF4) return {3, 4};
  return {0, 0};
}

constexpr int64_t kPow10[] = {1,          10,          100,          1000,          10000,          100000,
                              1000000,    10000000,    100000000,    1000000000,    10000000000,    100000000000,
                              1000000000000, 10000000000000, 100000000000000, 1000000000000000, 10000000000000000};

// Whether some integer written by extending the digits so far (magnitude m with `digits`
// digits, sign `neg`; digits == 0: only the sign) within kJsonMaxDigits lies in [lo, hi].
// `now`: only the value as it stands.
bool integer_reachable(const JsonNode& n, bool neg, int64_t m, int64_t digits, bool now) {
  auto hits = [&](int64_t a, int64_t b) {  // magnitudes [a, b] with the sign
    const int64_t lo = neg ? -b : a, hi = neg ? -a : b;
    return lo <= n.maximum && hi >= n.minimum;
  };
  if (digits == 0) return hits(neg ? 1 : 0, kPow10[kJsonMaxDigits] - 1);
  if (now || m == 0) return hits(m, m);
  for (int64_t k = 0; k + digits <= kJsonMaxDigits; ++k)
    if (hits(m * kPow10[k], (m + 1) * kPow10[k] - 1)) return true;
  return false;
}

// Last index a key may name when the next candidate property is `a`: up to and including the
// first required property from `a` on (keys come in declared order; optional ones may be skipped).
int64_t last_candidate(const JsonNode& n, int64_t a) {
  for (int64_t i = a; i < int64_t(n.properties.size()); ++i)
    if (n.properties[size_t(i)].required) return i;
  return int64_t(n.properties.size()) - 1;
}

bool required_left(const JsonNode& n, int64_t a) {
  for (int64_t i = a; i < int64_t(n.properties.size()); ++i)
    if (n.properties[size_t(i)].required) return true;
  return false;
}

// Whether the value on top of the stack may end here (without a closing byte of its own).
bool top_can_end(const JsonGrammar& g, const JsonFrame& f) {
  if (f.node == JsonAutomaton::kRootNode) return false;
  const JsonNode& n = g.nodes[size_t(f.node)];
  switch (n.kind) {
    case Kind::Number:
      return f.phase == N_ZERO || f.phase == N_INT || f.phase == N_FRAC || f.phase == N_EXP_DIGITS;
    case Kind::Integer:
      return (f.phase == N_ZERO || f.phase == N_INT) && integer_reachable(n, f.y, f.v, f.a, true);
    case Kind::Literal:
      return n.literals.nodes[size_t(f.v)].terminal >= 0;
    default:
      return false;
  }
}

}  // namespace

JsonAutomaton::JsonAutomaton(std::shared_ptr<const JsonGrammar> grammar) : g_(std::move(grammar)) {
  DSV3_ASSERT(g_ && g_->root >= 0);
  JsonFrame root;
  root.node = kRootNode;
  root.phase = R_START;
  frames_.push_back(root);
  ends_.push_back(1);
}

void JsonAutomaton::emit(const Stack& st, JsonAutomaton& out) const {
  out.frames_.insert(out.frames_.end(), st.begin(), st.end());
  out.ends_.push_back(uint32_t(out.frames_.size()));
}

void JsonAutomaton::push_value(Stack& st, int32_t node, uint8_t b, JsonAutomaton& out) const {
  const JsonNode& n = g_->nodes[size_t(node)];
  // A container opens only where its elements still fit under the depth bound: otherwise
  // "{\"k\":" at the last level would be a dead end that no byte continues.
  const bool container = n.kind == Kind::Object || n.kind == Kind::Array;
  if (st.size() > size_t(kJsonMaxDepth) || (container && st.size() == size_t(kJsonMaxDepth))) return;
  if (n.kind == Kind::AnyOf) {
    for (size_t i = 0; i < n.alternatives.size(); ++i) {
      if (i + 1 == n.alternatives.size()) return push_value(st, n.alternatives[i], b, out);
      Stack copy = st;
      push_value(copy, n.alternatives[i], b, out);
    }
    return;
  }
  JsonFrame f;
  f.node = node;
  st.push_back(f);
  feed(st, b, out);
}

// Feeds byte b to the top of stack `st` (a scratch copy this may modify), emitting every
// resulting stack into `out`.
void JsonAutomaton::feed(Stack& st, uint8_t b, JsonAutomaton& out) const {
  JsonFrame& f = st.back();
  // A whitespace byte in a phase that allows a run of it.
  auto space = [&]() {
    if ((f.ws & ~kNewlineSeen) >= g_->max_whitespace) return;
    if (b == '\n') {
      if (!g_->newlines || (f.ws & kNewlineSeen)) return;
      f.ws |= kNewlineSeen;
    }
    f.ws++;
    emit(st, out);
  };
  auto to = [&](uint8_t phase) {
    f.phase = phase;
    f.ws = 0;
  };
  auto pop_and_refeed = [&]() {
    st.pop_back();
    feed(st, b, out);
  };
  if (f.node == kRootNode) {
    if (f.phase != R_START) return;
    if (is_ws(b)) return g_->leading_whitespace ? space() : void();
    to(R_DONE);
    return push_value(st, g_->root, b, out);
  }
  const JsonNode& n = g_->nodes[size_t(f.node)];
  switch (n.kind) {
    case Kind::Object: {
      const int64_t np = int64_t(n.properties.size());
      auto start_key = [&]() {
        to(O_COLON);
        JsonFrame key;
        key.node = g_->key_string;
        key.phase = S_BODY;
        st.push_back(key);
        emit(st, out);
      };
      switch (f.phase) {
        case O_START:
          if (b == '{') to(O_FIRST), emit(st, out);
          return;
        case O_FIRST:
        case O_NEXT_KEY:
          if (is_ws(b)) return space();
          if (b == '"') {
            if (n.free_keys) return start_key();
            if (f.a >= np) return;
            to(O_KEY);
            f.v = 0;
            return emit(st, out);
          }
          if (b == '}' && f.phase == O_FIRST && (n.free_keys || !required_left(n, 0))) {
            st.pop_back();
            return emit(st, out);
          }
          return;
        case O_KEY: {
          const int32_t c = n.keys.child(int32_t(f.v), b);
          if (c < 0 || !n.keys.has_below(c, int32_t(f.a), int32_t(last_candidate(n, f.a)))) return;
          f.v = c;
          if (const int32_t t = n.keys.nodes[size_t(c)].terminal; t >= 0) {
            to(O_COLON);
            f.a = t;
            f.v = 0;
          }
          return emit(st, out);
        }
        case O_COLON:
          if (is_ws(b)) return space();
          if (b == ':') to(O_VALUE), emit(st, out);
          return;
        case O_VALUE: {
          if (is_ws(b)) return space();
          to(O_AFTER_VALUE);
          int32_t value;
          if (n.free_keys) {
            value = n.additional;
          } else {
            value = n.properties[size_t(f.a)].node;
            f.a++;
          }
          return push_value(st, value, b, out);
        }
        case O_AFTER_VALUE:
          if (is_ws(b)) return space();
          if (b == ',' && (n.free_keys || f.a < np)) return to(O_NEXT_KEY), emit(st, out);
          if (b == '}' && (n.free_keys || !required_left(n, f.a))) {
            st.pop_back();
            return emit(st, out);
          }
          return;
      }
      return;
    }
    case Kind::Array:
      switch (f.phase) {
        case A_START:
          if (b == '[') to(A_FIRST), emit(st, out);
          return;
        case A_FIRST:
          if (is_ws(b)) return space();
          if (b == ']') {
            if (n.min_items > 0) return;
            st.pop_back();
            return emit(st, out);
          }
          if (n.max_items == 0) return;
          to(A_AFTER_VALUE);
          f.a = 1;
          return push_value(st, n.items, b, out);
        case A_AFTER_VALUE:
          if (is_ws(b)) return space();
          if (b == ',' && f.a < n.max_items) return to(A_NEXT), emit(st, out);
          if (b == ']' && f.a >= n.min_items) {
            st.pop_back();
            return emit(st, out);
          }
          return;
        case A_NEXT:
          if (is_ws(b)) return space();
          to(A_AFTER_VALUE);
          f.a++;
          return push_value(st, n.items, b, out);
      }
      return;
    case Kind::String: {
      // One more character; lengths only matter up to min_length when there is no maximum,
      // so the count saturates there and equal states share a mask.
      auto count_char = [&]() {
        if (f.a >= n.max_length) return false;
        f.a++;
        if (n.max_length == std::numeric_limits<int64_t>::max()) f.a = std::min(f.a, n.min_length);
        return true;
      };
      switch (f.phase) {
        case S_START:
          if (b == '"') to(S_BODY), emit(st, out);
          return;
        case S_BODY:
          if (b == '"') {
            if (f.a < n.min_length) return;
            st.pop_back();
            return emit(st, out);
          }
          if (b < 0x20 || !count_char()) return;
          if (b == '\\') return to(S_ESC), emit(st, out);
          if (b < 0x80) return emit(st, out);
          if (const auto [left, range] = utf8_lead(b); left > 0) {
            to(S_UTF8);
            f.x = left;
            f.y = range;
            return emit(st, out);
          }
          return;
        case S_UTF8:
          if (b < kContLo[f.y] || b > kContHi[f.y]) return;
          f.y = 0;
          if (--f.x == 0) to(S_BODY);
          return emit(st, out);
        case S_ESC:
          if (b == 'u') {
            to(S_HEX);
            f.x = 0;
            f.y = 0;
            return emit(st, out);
          }
          if (std::strchr("\"\\/bfnrt", b) && b != 0) return to(S_BODY), emit(st, out);
          return;
        case S_HEX:
          // y: 1 after a first digit d (maybe a surrogate), 2 for a high surrogate D800-DBFF,
          // which a low one must follow; a lone low surrogate DC00-DFFF is refused.
          if (!is_hex(b)) return;
          if (f.x == 0) {
            f.y = (b == 'd' || b == 'D');
          } else if (f.x == 1 && f.y) {
            const int d = b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10;
            if (d >= 12) return;
            f.y = d >= 8 ? 2 : 0;
          }
          if (++f.x == 4) {
            to(f.y == 2 ? S_PAIR_BSLASH : S_BODY);
            if (f.phase == S_BODY) f.x = f.y = 0;  // equal body states compare equal (mask cache)
          }
          return emit(st, out);
        case S_PAIR_BSLASH:
          if (b == '\\') to(S_PAIR_U), emit(st, out);
          return;
        case S_PAIR_U:
          if (b == 'u') {
            to(S_PAIR_HEX);
            f.x = 0;
            emit(st, out);
          }
          return;
        case S_PAIR_HEX:
          if (!is_hex(b)) return;
          if (f.x == 0 && !(b == 'd' || b == 'D')) return;
          if (f.x == 1 && !((b >= 'c' && b <= 'f') || (b >= 'C' && b <= 'F'))) return;
          if (++f.x == 4) to(S_BODY), f.x = f.y = 0;
          return emit(st, out);
      }
      return;
    }
    case Kind::Number:
      switch (f.phase) {
        case N_START:
          if (b == '-') return to(N_MINUS), emit(st, out);
          [[fallthrough]];
        case N_MINUS:
          if (b == '0') return to(N_ZERO), emit(st, out);
          if (is_digit(b)) {
            to(N_INT);
            f.a = 1;
            return emit(st, out);
          }
          return;
        case N_INT:
          if (is_digit(b)) {
            if (f.a >= kJsonMaxDigits) return;
            f.a++;
            return emit(st, out);
          }
          [[fallthrough]];
        case N_ZERO:
          if (b == '.') return to(N_DOT), emit(st, out);
          if (b == 'e' || b == 'E') return to(N_EXP), emit(st, out);
          return pop_and_refeed();
        case N_DOT:
          if (!is_digit(b)) return;
          to(N_FRAC);
          f.a = 1;
          return emit(st, out);
        case N_FRAC:
          if (is_digit(b)) {
            if (f.a >= kJsonMaxDigits) return;
            f.a++;
            return emit(st, out);
          }
          if (b == 'e' || b == 'E') return to(N_EXP), emit(st, out);
          return pop_and_refeed();
        case N_EXP:
          if (b == '+' || b == '-') return to(N_EXP_SIGN), emit(st, out);
          [[fallthrough]];
        case N_EXP_SIGN:
          if (!is_digit(b)) return;
          to(N_EXP_DIGITS);
          f.a = 1;
          return emit(st, out);
        case N_EXP_DIGITS:
          if (is_digit(b)) {
            if (f.a >= kJsonMaxExponentDigits) return;
            f.a++;
            return emit(st, out);
          }
          return pop_and_refeed();
      }
      return;
    case Kind::Integer:  // -?(0|[1-9][0-9]*) within [minimum, maximum]; x: negative
      switch (f.phase) {
        case N_START:
          if (b == '-') {
            f.y = 1;
            if (!integer_reachable(n, true, 0, 0, false)) return;
            return to(N_MINUS), emit(st, out);
          }
          [[fallthrough]];
        case N_MINUS:
          if (b == '0') {
            if (f.y || !integer_reachable(n, false, 0, 1, true)) return;  // no "-0"
            f.a = 1;
            f.v = 0;
            return to(N_ZERO), emit(st, out);
          }
          if (is_digit(b) && integer_reachable(n, f.y, b - '0', 1, false)) {
            to(N_INT);
            f.a = 1;
            f.v = b - '0';
            return emit(st, out);
          }
          return;
        case N_INT:
          if (is_digit(b)) {
            if (f.a >= kJsonMaxDigits || !integer_reachable(n, f.y, f.v * 10 + (b - '0'), f.a + 1, false)) return;
            f.a++;
            f.v = f.v * 10 + (b - '0');
            return emit(st, out);
          }
          [[fallthrough]];
        case N_ZERO:
          if (!integer_reachable(n, f.y, f.v, f.a, true)) return;
          return pop_and_refeed();
      }
      return;
    case Kind::Literal: {
      const int32_t c = n.literals.child(int32_t(f.v), b);
      if (c < 0) {
        if (n.literals.nodes[size_t(f.v)].terminal >= 0) return pop_and_refeed();
        return;
      }
      f.v = c;
      const auto& node = n.literals.nodes[size_t(c)];
      if (node.terminal >= 0 && node.next.empty()) st.pop_back();  // nothing can follow
      return emit(st, out);
    }
    case Kind::Sequence: {
      // phase: the next item. The last one takes the sequence's place (a repetition through an
      // AnyOf that holds the sequence again stays at one depth).
      const int32_t item = n.sequence[f.phase];
      if (size_t(f.phase) + 1 == n.sequence.size()) st.pop_back();
      else to(uint8_t(f.phase + 1));
      return push_value(st, item, b, out);
    }
    case Kind::AnyOf:
      DSV3_ASSERT(false);  // expanded by push_value
  }
}

bool JsonAutomaton::step(uint8_t b, JsonAutomaton& out) const {
  if (out.g_ != g_) out.g_ = g_;
  out.frames_.clear();
  out.ends_.clear();
  thread_local Stack st;
  uint32_t begin = 0;
  for (uint32_t end : ends_) {
    st.assign(frames_.begin() + begin, frames_.begin() + end);
    feed(st, b, out);
    begin = end;
  }
  out.canonicalise();
  return !out.ends_.empty();
}

// Stacks in a canonical order without duplicates, so equal states compare and hash equal.
void JsonAutomaton::canonicalise() {
  if (ends_.size() <= 1) return;
  struct Span {
    uint32_t begin, end;
  };
  std::vector<Span> spans;
  uint32_t begin = 0;
  for (uint32_t end : ends_) spans.push_back({begin, end}), begin = end;
  auto less = [&](const Span& a, const Span& b) {
    const uint32_t la = a.end - a.begin, lb = b.end - b.begin;
    if (la != lb) return la < lb;
    return std::memcmp(&frames_[a.begin], &frames_[b.begin], la * sizeof(JsonFrame)) < 0;
  };
  auto equal = [&](const Span& a, const Span& b) {
    const uint32_t la = a.end - a.begin;
    return la == b.end - b.begin && std::memcmp(&frames_[a.begin], &frames_[b.begin], la * sizeof(JsonFrame)) == 0;
  };
  std::sort(spans.begin(), spans.end(), less);
  spans.erase(std::unique(spans.begin(), spans.end(), equal), spans.end());
  std::vector<JsonFrame> frames;
  std::vector<uint32_t> ends;
  for (const Span& s : spans) {
    frames.insert(frames.end(), frames_.begin() + s.begin, frames_.begin() + s.end);
    ends.push_back(uint32_t(frames.size()));
  }
  frames_ = std::move(frames);
  ends_ = std::move(ends);
}

bool JsonAutomaton::advance(uint8_t b) {
  JsonAutomaton next(*this);
  if (!step(b, next)) return false;
  *this = std::move(next);
  return true;
}

bool JsonAutomaton::advance(std::string_view bytes) {
  JsonAutomaton cur(*this), next(*this);
  for (unsigned char b : bytes) {
    if (!cur.step(b, next)) return false;
    std::swap(cur, next);
  }
  *this = std::move(cur);
  return true;
}

bool JsonAutomaton::can_end() const {
  uint32_t begin = 0;
  for (uint32_t end : ends_) {
    // Pop values that may end here (a number, a literal that is a prefix of another) down to the root.
    uint32_t top = end;
    while (top > begin + 1 && top_can_end(*g_, frames_[top - 1])) --top;
    if (top == begin + 1 && frames_[begin].phase == R_DONE) return true;
    begin = end;
  }
  return false;
}

bool JsonAutomaton::finished() const {
  for (size_t i = 0; i < ends_.size(); ++i) {
    const uint32_t begin = i == 0 ? 0 : ends_[i - 1];
    if (ends_[i] - begin != 1 || frames_[begin].phase != R_DONE) return false;
  }
  return !ends_.empty();
}

int64_t JsonAutomaton::string_room() const {
  if (ends_.size() != 1 || frames_.size() < 2) return -1;
  const JsonFrame& f = frames_.back();
  const JsonNode& n = g_->nodes[size_t(f.node)];
  if (n.kind != Kind::String || f.phase != S_BODY) return -1;
  return n.max_length == std::numeric_limits<int64_t>::max() ? n.max_length : n.max_length - f.a;
}

size_t JsonAutomaton::hash() const {
  // FNV-1a over the frames' bytes and the stack ends.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const void* p, size_t n) {
    const auto* c = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 1099511628211ull;
  };
  mix(frames_.data(), frames_.size() * sizeof(JsonFrame));
  mix(ends_.data(), ends_.size() * sizeof(uint32_t));
  return size_t(h);
}

}  // namespace dsv3
