// Structured output, part 3: which tokens may come next. The vocabulary's byte strings form a
// trie, stored in preorder, that is walked with the byte automaton (json_automaton.h): a prefix
// the automaton rejects skips its whole subtree. Masks are cached per automaton state, and the
// sampler's own draw is checked first, so most steps cost one token's bytes through the
// automaton and no mask at all.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/json_automaton.h"
#include "engine/sampler.h"
#include "tokenizer/tokenizer.h"

namespace dsv3 {

// A set of tokens' byte strings as a trie stored in preorder. Node i > 0 extends its parent
// (the last node before it with depth - 1) by `byte`; the nodes of its subtree are
// i + 1 .. skip - 1; the tokens whose bytes end there are token_ids[tok_begin .. tok_end).
struct ByteTrie {
  struct Node {
    uint32_t skip;
    uint32_t tok_begin, tok_end;
    uint16_t depth;
    uint8_t byte;
  };
  std::vector<Node> nodes;
  std::vector<int32_t> token_ids;
  int32_t max_depth = 0;

  // `ids` sorted by their bytes.
  ByteTrie(std::span<const int32_t> ids, const std::vector<std::string>& bytes);
};

class VocabTrie {
 public:
  // Tokens [0, n_vocab) that decode to bytes, except the tokenizer's added tokens (special or
  // not: chat markers never appear inside JSON) and tokens holding a byte 0xF8..0xFC (never in
  // UTF-8 text); and the five tool-call markers as those bytes, one each (kToolMarkerBytes:
  // forced tool calls spell them; no JSON value takes them).
  VocabTrie(const Tokenizer& tok, int32_t n_vocab);

  int32_t n_vocab() const { return n_vocab_; }
  // The bytes of `id` as the trie holds them (empty: never allowed by a byte automaton).
  std::string_view bytes(int32_t id) const {
    return id >= 0 && id < n_vocab_ ? std::string_view(bytes_[size_t(id)]) : std::string_view();
  }
  // Every token.
  const ByteTrie& all() const { return all_; }
  // The tokens that are not plain string content (see plain_by_chars): what is left to walk
  // inside a string's body.
  const ByteTrie& not_plain() const { return not_plain_; }
  // Tokens whose bytes are whole UTF-8 characters with no quote, backslash or control byte, as
  // (characters, id), fewest characters first; and all of them as a mask.
  const std::vector<std::pair<int32_t, int32_t>>& plain_by_chars() const { return plain_; }
  const std::vector<uint64_t>& plain_bits() const { return plain_bits_; }

 private:
  int32_t n_vocab_;
  std::vector<std::string> bytes_;
  std::vector<std::pair<int32_t, int32_t>> plain_;
  std::vector<uint64_t> plain_bits_;
  ByteTrie all_, not_plain_;
};

// A set of token ids as bits.
struct TokenMask {
  std::vector<uint64_t> bits;
  explicit TokenMask(int32_t n = 0) : bits((size_t(n) + 63) / 64, 0) {}
  bool test(int32_t id) const { return (bits[size_t(id) >> 6] >> (id & 63)) & 1; }
  void set(int32_t id) { bits[size_t(id) >> 6] |= uint64_t(1) << (id & 63); }
  int64_t count() const;
};

// The tokens the automaton allows after its current bytes (the trie walk), plus `eos` when the
// bytes so far are a complete value.
TokenMask compute_token_mask(const VocabTrie& trie, const JsonAutomaton& state, std::span<const int32_t> eos);

// Generation under a grammar: the automaton's state, the end-of-sequence tokens, and the masks
// of the states seen so far (shared by copies, e.g. for speculative verification). Not
// thread-safe; one generation at a time uses it.
class TokenConstraint {
 public:
  TokenConstraint(std::shared_ptr<const VocabTrie> trie, std::shared_ptr<const JsonGrammar> grammar,
                  std::vector<int32_t> eos);

  // Whether `token` may come next (its bytes through a copy of the automaton; an EOS token
  // when the value is complete). The one check most steps make.
  bool allows(int32_t token) const;
  // Moves past `token`. Precondition: allows(token).
  void accept(int32_t token);
  // The allowed tokens of the current state (computed once per state, then cached).
  const TokenMask& mask();

  // The value is complete and nothing may follow it: only an EOS token is allowed.
  bool finished() const { return state_.finished(); }
  bool is_eos(int32_t token) const;
  const JsonAutomaton& state() const { return state_; }

  struct Stats {
    int64_t checks = 0, masks_computed = 0, masks_cached = 0;
  };
  const Stats& stats() const { return cache_->stats; }

 private:
  struct Hash {
    size_t operator()(const JsonAutomaton& a) const { return a.hash(); }
  };
  struct Cache {
    std::unordered_map<JsonAutomaton, TokenMask, Hash> masks;
    Stats stats;
  };
  std::shared_ptr<const VocabTrie> trie_;
  std::vector<int32_t> eos_;
  JsonAutomaton state_;
  std::shared_ptr<Cache> cache_;
};

// The next token under `c`: the sampler's own draw when `c` allows it; otherwise a draw from the
// sampler's distribution restricted to the allowed tokens (so the result is distributed as the
// sampler's distribution conditioned on the constraint; greedy: the best allowed token), or,
// when the sampler's filters (top-k, top-p, min-p) kept no allowed token, from the masked
// logits. Returns -1 when no token at all is allowed (a dead end of the grammar for this
// vocabulary).
int32_t sample_constrained(Sampler& sampler, std::span<const float> logits, TokenConstraint& c);

}  // namespace dsv3
