// Structured output, part 2: a pushdown automaton over bytes that accepts exactly the JSON texts
// a compiled grammar (json_schema.h) allows, one byte at a time, so a token mask can be computed
// by walking the vocabulary's byte strings. anyOf makes it nondeterministic: the state is a set
// of stacks (as llama.cpp's grammar stacks), one per live alternative. Strings are checked as
// UTF-8 byte by byte (a token may end inside a character); whitespace runs are bounded.
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "engine/json_schema.h"

namespace dsv3 {

// One stack entry: a value being matched. Plain bytes (no padding) so that states compare and
// hash as memory.
struct JsonFrame {
  int32_t node = 0;   // grammar node, or kRootNode
  uint8_t phase = 0;  // where in the value (per kind)
  // The current whitespace run: its length (low 7 bits, at most kJsonMaxWhitespace) and, in
  // the top bit, whether it had its one newline. Pretty-printing needs no more, and a model that
  // likes blank lines (dsv3-kjv does) cannot fill every gap with them.
  uint8_t ws = 0;
  uint8_t x = 0, y = 0;  // per phase: UTF-8 bytes left and range, \u digits, integer sign
  int64_t a = 0;      // property index / item count / characters / digits
  int64_t v = 0;      // literal-trie node / integer magnitude
  bool operator==(const JsonFrame&) const = default;
};
static_assert(sizeof(JsonFrame) == 24);

class JsonAutomaton {
 public:
  static constexpr int32_t kRootNode = -1;

  // The state before the first byte (leading whitespace allowed).
  explicit JsonAutomaton(std::shared_ptr<const JsonGrammar> grammar);

  // Consumes one byte; false (state unchanged) when the grammar does not allow it.
  bool advance(uint8_t b);
  // Consumes all of `bytes` or none (state unchanged on false).
  bool advance(std::string_view bytes);
  // The state after byte `b` into `out` (its buffers are reused); false when not allowed.
  bool step(uint8_t b, JsonAutomaton& out) const;

  // The bytes so far form a complete value (a number may still go on: see finished()).
  bool can_end() const;
  // Complete, and no byte may follow: end of generation is the only way on.
  bool finished() const;

  // Inside a string's body with one stack (no escape or character half done): how many more
  // characters the string may take (INT64_MAX when unbounded); -1 otherwise. Any run of plain
  // characters (no quote, backslash or control byte) up to that many leaves the state as it
  // is but for the count, which is what the token mask's fast path relies on.
  int64_t string_room() const;

  size_t hash() const;
  bool operator==(const JsonAutomaton& o) const { return frames_ == o.frames_ && ends_ == o.ends_; }
  int stacks() const { return int(ends_.size()); }
  const JsonGrammar& grammar() const { return *g_; }

 private:
  using Stack = std::vector<JsonFrame>;
  void feed(Stack& st, uint8_t b, JsonAutomaton& out) const;
  void push_value(Stack& st, int32_t node, uint8_t b, JsonAutomaton& out) const;
  void emit(const Stack& st, JsonAutomaton& out) const;
  void canonicalise();

  std::shared_ptr<const JsonGrammar> g_;
  std::vector<JsonFrame> frames_;  // all stacks, bottom first, one after another
  std::vector<uint32_t> ends_;     // end offset of each stack in frames_
};

}  // namespace dsv3
