#include "engine/token_mask.h"

#include <algorithm>
#include <bit>
#include <limits>
#include <numeric>

#include "engine/generate.h"
#include "engine/tool_call_grammar.h"

namespace dsv3 {

ByteTrie::ByteTrie(std::span<const int32_t> ids, const std::vector<std::string>& bytes)
    : token_ids(ids.begin(), ids.end()) {
  nodes.push_back({0, 0, 0, 0, 0});
  std::vector<uint32_t> path = {0};  // node index at each depth of the previous token
  std::string_view prev;
  for (size_t k = 0; k < ids.size(); ++k) {
    const std::string_view s = bytes[size_t(ids[k])];
    size_t common = 0;
    while (common < s.size() && common < prev.size() && s[common] == prev[common]) ++common;
    path.resize(common + 1);
    for (size_t d = common; d < s.size(); ++d) {
      path.push_back(uint32_t(nodes.size()));
      nodes.push_back({0, uint32_t(k), uint32_t(k), uint16_t(d + 1), uint8_t(s[d])});
    }
    Node& end = nodes[path[s.size()]];
    if (end.tok_begin == end.tok_end) end.tok_begin = uint32_t(k);
    end.tok_end = uint32_t(k + 1);
    max_depth = std::max(max_depth, int32_t(s.size()));
    prev = s;
  }
  // skip: the first later node that is not deeper (the end of the subtree).
  std::vector<uint32_t> open;
  for (uint32_t i = 0; i < nodes.size(); ++i) {
    while (!open.empty() && nodes[open.back()].depth >= nodes[i].depth) nodes[open.back()].skip = i, open.pop_back();
    open.push_back(i);
  }
  for (uint32_t i : open) nodes[i].skip = uint32_t(nodes.size());
}

namespace {

// Characters of `s` if it is plain JSON string content (whole UTF-8 characters, RFC 3629, with
// no quote, backslash or control byte), else -1.
int32_t plain_chars(std::string_view s) {
  int32_t chars = 0;
  for (size_t i = 0; i < s.size(); ++chars) {
    const auto b = uint8_t(s[i]);
    if (b < 0x80) {
      if (b < 0x20 || b == '"' || b == '\\') return -1;
      ++i;
      continue;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) len = 2;
    else if (b >= 0xE0 && b <= 0xEF) len = 3, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
    else if (b >= 0xF0 && b <= 0xF4) len = 4, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
    else return -1;
    if (i + len > s.size()) return -1;
    for (size_t k = 1; k < len; ++k) {
      const auto c = uint8_t(s[i + k]);
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) return -1;
    }
    i += len;
  }
  return chars;
}

std::vector<int32_t> vocab_ids(const Tokenizer& tok, int32_t n_vocab, std::vector<std::string>& bytes) {
  DSV3_CHECK(n_vocab > 0, "empty vocabulary");
  bytes.assign(size_t(n_vocab), {});
  std::vector<int32_t> ids;
  const auto markers = tool_marker_bytes(tok);
  for (int32_t id = 0; id < n_vocab; ++id) {
    if (tok.is_added(id)) continue;
    const std::string_view b = tok.token_bytes(id);
    if (b.empty()) continue;
    // Byte-level vocabularies hold every byte, 0xF8..0xFC too: those tokens can never be part of
    // UTF-8 text, and must not pass for the markers.
    if (std::any_of(b.begin(), b.end(), [](char c) { return uint8_t(c) >= uint8_t(kToolMarkerBytes[0]) &&
                                                             uint8_t(c) <= uint8_t(kToolMarkerBytes[4]); }))
      continue;
    DSV3_CHECK(b.size() <= std::numeric_limits<uint16_t>::max(), "token ", id, " is too long");
    bytes[size_t(id)] = std::string(b);
    ids.push_back(id);
  }
  // The tool-call markers, one byte each, for forced tool calls (engine/tool_call_grammar.h).
  for (const auto& [id, byte] : markers)
    if (id < n_vocab) {
      bytes[size_t(id)] = std::string(1, byte);
      ids.push_back(id);
    }
  // Sorted byte strings give the trie's preorder: a prefix comes before its extensions.
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return bytes[size_t(a)] < bytes[size_t(b)]; });
  return ids;
}

std::vector<int32_t> not_plain_ids(std::span<const int32_t> ids, const std::vector<std::string>& bytes) {
  std::vector<int32_t> out;
  for (int32_t id : ids)
    if (plain_chars(bytes[size_t(id)]) < 0) out.push_back(id);
  return out;
}

}  // namespace

VocabTrie::VocabTrie(const Tokenizer& tok, int32_t n_vocab)
    : n_vocab_(n_vocab),
      all_(vocab_ids(tok, n_vocab, bytes_), bytes_),
      not_plain_(not_plain_ids(all_.token_ids, bytes_), bytes_) {
  plain_bits_.assign((size_t(n_vocab) + 63) / 64, 0);
  for (int32_t id : all_.token_ids)
    if (const int32_t c = plain_chars(bytes_[size_t(id)]); c >= 0) {
      plain_.push_back({c, id});
      plain_bits_[size_t(id) >> 6] |= uint64_t(1) << (id & 63);
    }
  std::sort(plain_.begin(), plain_.end());
}

int64_t TokenMask::count() const {
  int64_t n = 0;
  for (uint64_t w : bits) n += std::popcount(w);
  return n;
}

namespace {

// Sets the tokens of `trie` that the automaton accepts from `state` (one preorder walk that
// skips the subtree of every prefix it refuses).
void walk(const ByteTrie& trie, const JsonAutomaton& state, TokenMask& m) {
  // states[d]: the automaton after the first d bytes of the current node's path.
  thread_local std::vector<JsonAutomaton> states;
  states.assign(size_t(trie.max_depth) + 1, state);
  const auto& nodes = trie.nodes;
  size_t i = 1;
  while (i < nodes.size()) {
    const ByteTrie::Node& n = nodes[i];
    if (!states[n.depth - 1].step(n.byte, states[n.depth])) {
      i = n.skip;
      continue;
    }
    for (uint32_t k = n.tok_begin; k < n.tok_end; ++k) m.set(trie.token_ids[k]);
    ++i;
  }
}

}  // namespace

TokenMask compute_token_mask(const VocabTrie& trie, const JsonAutomaton& state, std::span<const int32_t> eos) {
  TokenMask m(trie.n_vocab());
  for (int32_t e : eos)
    if (e >= 0 && e < trie.n_vocab() && state.can_end()) m.set(e);
  // Inside a string's body, plain content keeps the state (but for the count): set those
  // tokens that fit at once and walk only the rest (quotes, escapes, partial characters).
  if (const int64_t room = state.string_room(); room >= 0) {
    const auto& plain = trie.plain_by_chars();
    if (!plain.empty() && room >= plain.back().first) {
      for (size_t w = 0; w < m.bits.size(); ++w) m.bits[w] |= trie.plain_bits()[w];
    } else {
      for (const auto& [chars, id] : plain) {
        if (chars > room) break;
        m.set(id);
      }
    }
    walk(trie.not_plain(), state, m);
    return m;
  }
  walk(trie.all(), state, m);
  return m;
}

TokenConstraint::TokenConstraint(std::shared_ptr<const VocabTrie> trie, std::shared_ptr<const JsonGrammar> grammar,
                                 std::vector<int32_t> eos)
    : trie_(std::move(trie)), eos_(std::move(eos)), state_(std::move(grammar)), cache_(std::make_shared<Cache>()) {}

bool TokenConstraint::is_eos(int32_t token) const { return std::find(eos_.begin(), eos_.end(), token) != eos_.end(); }

bool TokenConstraint::allows(int32_t token) const {
  cache_->stats.checks++;
  if (is_eos(token)) return state_.can_end();
  const std::string_view b = trie_->bytes(token);
  if (b.empty()) return false;
  JsonAutomaton next = state_;
  return next.advance(b);
}

void TokenConstraint::accept(int32_t token) {
  if (is_eos(token)) {
    DSV3_ASSERT(state_.can_end());
    return;
  }
  DSV3_ASSERT(state_.advance(trie_->bytes(token)));
}

const TokenMask& TokenConstraint::mask() {
  auto& masks = cache_->masks;
  if (auto it = masks.find(state_); it != masks.end()) {
    cache_->stats.masks_cached++;
    return it->second;
  }
  // A 129k-token mask is 16 KB; a few hundred states bound a request's cache to a few MB.
  if (masks.size() >= 256) masks.clear();
  cache_->stats.masks_computed++;
  return masks.emplace(state_, compute_token_mask(*trie_, state_, eos_)).first->second;
}

int32_t sample_constrained(Sampler& sampler, std::span<const float> logits, TokenConstraint& c) {
  const int32_t t = sampler.sample(logits);
  if (c.allows(t)) return t;
  const TokenMask& m = c.mask();
  const size_t n = std::min(logits.size(), size_t(m.bits.size() * 64));
  if (!sampler.greedy()) {
    std::vector<float> p = sampler.probabilities(logits);
    double kept = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      if (i >= n || !m.test(int32_t(i))) p[i] = 0;
      kept += p[i];
    }
    if (kept > 0) return sampler.draw(p);
  }
  std::vector<float> masked(logits.size(), -std::numeric_limits<float>::infinity());
  bool any = false;
  for (size_t i = 0; i < n; ++i)
    if (m.test(int32_t(i))) masked[i] = logits[i], any = true;
  if (!any) return -1;
  return sampler.sample(masked);
}

}  // namespace dsv3
