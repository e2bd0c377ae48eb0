// Continuous batching: greedy output identical alone and in a batch (through the Scheduler and
// through HTTP), the bounded queue (429), and a client that hangs up freeing its slot.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>

#include "engine/generate.h"
#include "engine/scheduler.h"
#include "server_test_env.h"

namespace dsv3::test {
namespace {

std::vector<std::vector<int32_t>> test_prompts(const Tokenizer& tok) {
  std::vector<std::vector<int32_t>> out;
  const char* texts[] = {"Hello", "The quick brown fox jumps over the lazy dog", "1 2 3 4 5 6 7 8 9 10 11 12",
                         ("A much longer prompt that will need several prefill chunks before decoding starts, "
                          "so that prefill and decode interleave in the same steps of the scheduler."),
                         "Why?", "def f(x):\n    return x * 2\n"};
  for (const char* t : texts) out.push_back(tok.encode(t, /*add_special=*/true));
  return out;
}

// Runs every request to the end; returns the text of each.
std::vector<std::string> run_all(Scheduler& sched, const std::vector<GenRequest>& reqs) {
  std::vector<std::shared_ptr<Job>> jobs;
  for (const GenRequest& r : reqs) jobs.push_back(sched.submit(r));
  std::vector<std::string> texts;
  for (auto& j : jobs) {
    std::string t;
    for (;;) {
      JobOutput o = j->take(std::chrono::milliseconds(100));
      t += o.text;
      if (o.done) {
        EXPECT_EQ(o.finish_reason, "length");
        break;
      }
    }
    texts.push_back(t);
  }
  return texts;
}

TEST(Scheduler, GreedyBatchEqualsAloneEqualsGenerate) {
  const LoadedChatModel& m = tiny_model();
  std::vector<GenRequest> reqs;
  for (auto& p : test_prompts(m.tokenizer)) {
    GenRequest r;
    r.prompt = p;
    r.max_tokens = 20;
    r.stop_at_eos = false;
    r.skip_special = false;  // as generate() decodes
    reqs.push_back(r);
  }
  SchedulerOptions o;
  o.max_batch = 8;
  o.ctx_size = 256;
  o.prefill_chunk = 256;  // whole prompts at once, as generate() feeds them
  Scheduler batched(*m.loaded.model, m.tokenizer, o);
  const std::vector<std::string> together = run_all(batched, reqs);
  EXPECT_LT(batched.steps(), int64_t(reqs.size()) * 19);  // the requests really shared steps

  // The reference: the prompt prefilled in the absorb form as the scheduler does (generate's own
  // prefill may take the expanded form, equal only within rounding, which the default BF16
  // activations make large enough to flip this random model's greedy choices), then generate.
  ThreadPool pool(1);
  for (size_t i = 0; i < reqs.size(); ++i) {
    Sequence seq(*m.loaded.model, 256);
    const std::span<const int32_t> prompt(reqs[i].prompt);
    feed_step(std::vector<Sequence*>{&seq}, std::vector<std::span<const int32_t>>{prompt}, pool);
    GenerateOptions g;
    g.max_new_tokens = 20;
    g.stop_at_eos = false;
    const GenerateResult ref = generate(seq, {}, &m.tokenizer, g, pool);
    EXPECT_EQ(together[i], ref.text) << "request " << i;
  }

  // Small prefill chunks interleave prefill with decode; each request alone gives the same.
  o.prefill_chunk = 5;
  Scheduler chunked(*m.loaded.model, m.tokenizer, o);
  const std::vector<std::string> interleaved = run_all(chunked, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(run_all(chunked, {reqs[i]})[0], interleaved[i]) << i;
}

// Scheduler options of the prefix-reuse tests: prompts prefilled 6 tokens at a time, with or
// without reuse of cached prompt rows (a "warm" and a "cold" scheduler to compare).
SchedulerOptions chunked_prefill(int max_batch, bool prefix_cache) {
  SchedulerOptions o;
  o.max_batch = max_batch;
  o.ctx_size = 256;
  o.prefill_chunk = 6;
  o.prefix_cache = prefix_cache;
  return o;
}

// Prefix caching: a chat's next turn (the conversation so far plus a new message) goes to the
// slot holding the conversation and prefills only what is new; its answer has the bits of a
// cold prefill. Unrelated prompts go to other free slots and reuse nothing.
TEST(Scheduler, PrefixCacheReusesAConversationsRowsWithIdenticalOutput) {
  const LoadedChatModel& m = tiny_model();
  auto request = [&](const std::string& text, int max_tokens) {
    GenRequest r;
    r.prompt = m.tokenizer.encode(text, /*add_special=*/true);
    r.max_tokens = max_tokens;
    r.stop_at_eos = false;
    return r;
  };
  Scheduler warm(*m.loaded.model, m.tokenizer, chunked_prefill(2, true));
  Scheduler cold(*m.loaded.model, m.tokenizer, chunked_prefill(2, false));

  const GenRequest first = request("User: tell me about the sea.\nAssistant:", 12);
  const std::string answer = run_all(warm, {first})[0];
  // The next turn: the first prompt, the answer as the model wrote it, and a new message.
  GenRequest next = request("User: tell me about the sea.\nAssistant:" + answer + "\nUser: and rivers?\nAssistant:", 10);
  auto job = warm.submit(next);
  std::string warm_text;
  for (JobOutput out; !out.done;) warm_text += (out = job->take(std::chrono::milliseconds(100))).text;
  const size_t common = [&] {
    size_t k = 0;
    while (k < first.prompt.size() && first.prompt[k] == next.prompt[k]) ++k;
    return k;
  }();
  EXPECT_GE(job->cached_tokens(), int64_t(common)) << "the first turn's prompt rows are reused";
  EXPECT_LT(job->cached_tokens(), int64_t(next.prompt.size()));
  EXPECT_EQ(warm_text, run_all(cold, {next})[0]);

  // A prompt sharing nothing takes the other (empty) slot; the same prompt twice reuses all
  // but its last token.
  const GenRequest other = request("Completely different words", 4);
  auto j2 = warm.submit(other);
  while (!j2->take(std::chrono::milliseconds(100)).done) {
  }
  EXPECT_EQ(j2->cached_tokens(), 0);  // the unused slot, not the conversation's
  auto j3 = warm.submit(other);
  std::string again;
  for (JobOutput out; !out.done;) again += (out = j3->take(std::chrono::milliseconds(100))).text;
  EXPECT_EQ(j3->cached_tokens(), int64_t(other.prompt.size()) - 1);
  EXPECT_EQ(again, run_all(cold, {other})[0]);
  // The conversation's slot was left alone: its next turn still finds it.
  auto j4 = warm.submit(next);
  while (!j4->take(std::chrono::milliseconds(100)).done) {
  }
  EXPECT_EQ(j4->cached_tokens(), int64_t(next.prompt.size()) - 1);
}

TEST(Scheduler, SamplesOfOnePromptCopyTheirSiblingsRows) {
  // n > 1: three samples of a prompt that takes several prefill chunks. One prefills it, the
  // others wait and copy its rows; each answer equals the same seed's answer prefilled alone.
  const LoadedChatModel& m = tiny_model();
  Scheduler warm(*m.loaded.model, m.tokenizer, chunked_prefill(3, true));
  Scheduler cold(*m.loaded.model, m.tokenizer, chunked_prefill(3, false));
  std::vector<GenRequest> reqs;
  for (uint64_t seed = 0; seed < 3; ++seed) {
    GenRequest r;
    r.prompt = test_prompts(m.tokenizer)[3];
    r.max_tokens = 8;
    r.stop_at_eos = false;
    r.sampling.temperature = 1.0f;
    r.sampling.seed = seed;
    r.group = 7;
    reqs.push_back(r);
  }
  std::vector<std::shared_ptr<Job>> jobs;
  for (const GenRequest& r : reqs) jobs.push_back(warm.submit(r));
  std::vector<int64_t> cached;
  for (size_t i = 0; i < jobs.size(); ++i) {
    std::string text;
    for (JobOutput out; !out.done;) text += (out = jobs[i]->take(std::chrono::milliseconds(100))).text;
    EXPECT_EQ(text, run_all(cold, {reqs[i]})[0]) << "seed " << i;
    cached.push_back(jobs[i]->cached_tokens());
  }
  std::sort(cached.begin(), cached.end());
  const int64_t rows = int64_t(reqs[0].prompt.size()) - 1;
  EXPECT_EQ(cached, (std::vector<int64_t>{0, rows, rows}));
}

TEST(Scheduler, SpeculativeBatchEqualsPlainGreedy) {
  // Each sequence drafts with the MTP module and verifies its drafts inside the batched step;
  // greedy text must equal plain batched decoding.
  const LoadedChatModel& m = tiny_model();
  ASSERT_GT(m.loaded.model->mtp_depth(), 0);
  std::vector<GenRequest> reqs;
  for (auto& p : test_prompts(m.tokenizer)) {
    GenRequest r;
    r.prompt = p;
    r.max_tokens = 17;
    r.stop_at_eos = false;
    reqs.push_back(r);
  }
  SchedulerOptions o;
  o.max_batch = 4;  // fewer slots than requests: jobs join as others leave
  o.ctx_size = 256;
  o.prefill_chunk = 7;
  Scheduler plain(*m.loaded.model, m.tokenizer, o);
  const auto want = run_all(plain, reqs);
  for (int k : {1, 3}) {
    o.speculative_k = k;
    Scheduler spec(*m.loaded.model, m.tokenizer, o);
    EXPECT_EQ(run_all(spec, reqs), want) << "mtp:" << k;
    EXPECT_GT(spec.spec_drafted(), 0);
  }
}

// Logprobs of tokens a speculative step accepted come from its verification rows: the same
// values plain decoding reports, token for token.
TEST(Scheduler, SpeculativeLogprobsEqualPlain) {
  const LoadedChatModel& m = tiny_model();
  GenRequest r;
  r.prompt = m.tokenizer.encode("The same answer twice", true);
  r.max_tokens = 12;
  r.stop_at_eos = false;
  r.logprobs = 2;
  auto collect = [&](int k) {
    SchedulerOptions o;
    o.max_batch = 2;
    o.ctx_size = 128;
    o.speculative_k = k;
    Scheduler sched(*m.loaded.model, m.tokenizer, o);
    auto job = sched.submit(r);
    std::vector<LogprobEntry> all;
    for (JobOutput out; !out.done;) {
      out = job->take(std::chrono::milliseconds(100));
      for (auto& e : out.logprobs) all.push_back(e);
    }
    return all;
  };
  const auto plain = collect(0), spec = collect(3);
  ASSERT_EQ(plain.size(), 12u);
  ASSERT_EQ(spec.size(), plain.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_EQ(spec[i].token, plain[i].token) << i;
    EXPECT_EQ(spec[i].logprob, plain[i].logprob) << i;
    EXPECT_EQ(spec[i].top, plain[i].top) << i;
  }
}

TEST(ServerBatching, ConcurrentClientsGetTheirOwnGreedyAnswers) {
  server::ServerOptions opt = small_options(8);
  opt.scheduler.prefill_chunk = 8;
  TestServer s(opt);
  const std::vector<std::string> users = {"Hello", "How are you today?", "Tell me a story about a dragon",
                                          "2+2=", "Translate 'cat' to French", "What is the capital of France?",
                                          "x", "Write a haiku about servers and batching"};
  std::vector<std::string> alone;
  for (const std::string& u : users) {
    const HttpResult r = post(s, "/v1/chat/completions", chat_body(u, 16).dump());
    ASSERT_EQ(r.status, 200) << r.body;
    alone.push_back(json::parse(r.body)["choices"][0]["message"]["content"]);
  }
  const int64_t steps_before = s.server().scheduler().steps();
  std::vector<std::string> together(users.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < users.size(); ++i)
    clients.emplace_back([&, i] {
      const bool stream = i % 2 == 0;
      const HttpResult r = post(s, "/v1/chat/completions", chat_body(users[i], 16, stream).dump());
      together[i] = stream ? streamed_text(r.body)
                           : json::parse(r.body)["choices"][0]["message"]["content"].get<std::string>();
    });
  for (auto& t : clients) t.join();
  for (size_t i = 0; i < users.size(); ++i) EXPECT_EQ(together[i], alone[i]) << "client " << i;
  EXPECT_LT(s.server().scheduler().steps() - steps_before, int64_t(users.size()) * 15);
}

// A streaming request in the background that hangs up when `hang_up` is set.
struct BackgroundStream {
  BackgroundStream(const TestServer& s, int max_tokens) {
    thread = std::thread([&s, this, max_tokens] {
      result = post(s, "/v1/chat/completions", chat_body("Go on and on", max_tokens, true).dump(), {},
                    [this](const std::string& so_far) {
                      chunks = int(sse_data(so_far).size());
                      return !hang_up.load();
                    });
    });
  }
  ~BackgroundStream() {
    hang_up = true;
    thread.join();
  }
  std::atomic<bool> hang_up{false};
  std::atomic<int> chunks{0};
  HttpResult result;
  std::thread thread;
};

TEST(ServerBatching, FullQueueIsAnswered429) {
  server::ServerOptions opt = small_options(1);
  opt.scheduler.max_queue = 1;
  TestServer s(opt);
  Scheduler& sched = s.server().scheduler();
  BackgroundStream a(s, 400);
  ASSERT_TRUE(wait_for([&] { return sched.running() == 1; }));
  BackgroundStream b(s, 400);
  ASSERT_TRUE(wait_for([&] { return sched.queued() == 1; }));
  const HttpResult r = post(s, "/v1/chat/completions", chat_body("one more", 4).dump());
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "rate_limit_exceeded");
  a.hang_up = b.hang_up = true;
  ASSERT_TRUE(wait_for([&] { return sched.running() == 0 && sched.queued() == 0; }));
  EXPECT_EQ(post(s, "/v1/chat/completions", chat_body("now there is room", 4).dump()).status, 200);
}

TEST(ServerBatching, ClientThatHangsUpFreesItsSlot) {
  TestServer s(small_options(1));
  Scheduler& sched = s.server().scheduler();
  {
    BackgroundStream a(s, 450);
    ASSERT_TRUE(wait_for([&] { return a.chunks.load() >= 3; }));
    a.hang_up = true;
    ASSERT_TRUE(wait_for([&] { return sched.running() == 0; }, 5));
  }
  EXPECT_LT(sched.steps(), 300);  // freed long before its 450 tokens
  // The one slot serves the next request at once.
  const HttpResult r = post(s, "/v1/chat/completions", chat_body("next", 4).dump());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["usage"]["completion_tokens"], 4);
}


// Non-streaming answers longer than a second are sent chunked behind JSON whitespace, which
// still parses; a client that gives up waiting frees the slot too.
TEST(ServerBatching, LongNonStreamingAnswersAndClientsThatGiveUp) {
  TestServer s(small_options(1, 4096));
  const HttpResult r = post(s, "/v1/chat/completions", chat_body("long", 450).dump());
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["usage"]["completion_tokens"], 450);

  Scheduler& sched = s.server().scheduler();
  const int64_t steps = sched.steps();
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(0, 300000);  // gives up after 0.3 s
  // An answer of 4000 tokens takes seconds even on a fast machine, so the server sees the
  // client gone (at its first write after 1 s) long before the end.
  EXPECT_FALSE(c.Post("/v1/chat/completions", chat_body("long", 4000).dump(), "application/json"));
  ASSERT_TRUE(wait_for([&] { return sched.running() == 0; }, 30));
  EXPECT_LT(sched.steps() - steps, 3999);
}

}  // namespace
}  // namespace dsv3::test

namespace dsv3::test {
namespace {

// n > 1: independent samples of one prompt, choices indexed 0..n-1 (streamed chunks carry their
// choice's index), usage counting the prompt once and every choice's tokens, reproducible with
// a seed; the streamed choices equal the whole ones.
TEST(ServerChoices, NSamplesIndexedStreamedAndCounted) {
  TestServer s(small_options(4, 512));
  json b = chat_body("Tell me a story.", 6);
  b["temperature"] = 1;
  b["seed"] = 11;
  b["n"] = 3;
  const HttpResult r = post(s, "/v1/chat/completions", b.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  ASSERT_EQ(j["choices"].size(), 3u);
  std::vector<std::string> texts;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(j["choices"][i]["index"], i);
    EXPECT_EQ(j["choices"][i]["finish_reason"], "length");
    texts.push_back(j["choices"][i]["message"]["content"].get<std::string>());
  }
  EXPECT_TRUE(texts[0] != texts[1] || texts[1] != texts[2]) << r.body;  // independent samples
  json single = b;
  single.erase("n");
  const json one = json::parse(post(s, "/v1/chat/completions", single.dump()).body);
  EXPECT_EQ(j["usage"]["prompt_tokens"], one["usage"]["prompt_tokens"]);
  EXPECT_EQ(j["usage"]["completion_tokens"], 3 * 6);
  EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"].get<int>() + 18);
  EXPECT_EQ(json::parse(post(s, "/v1/chat/completions", b.dump()).body)["choices"], j["choices"]);  // the seed

  b["stream"] = true;
  b["stream_options"] = {{"include_usage", true}};
  const HttpResult st = post(s, "/v1/chat/completions", b.dump());
  ASSERT_EQ(st.status, 200) << st.body;
  std::vector<std::string> streamed(3);
  std::vector<int> roles(3, 0), finishes(3, 0);
  json usage;
  for (const std::string& d : sse_data(st.body)) {
    if (d == "[DONE]") continue;
    const json c = json::parse(d);
    if (c["choices"].empty()) {
      usage = c["usage"];
      continue;
    }
    ASSERT_EQ(c["choices"].size(), 1u) << d;
    const int i = c["choices"][0]["index"].get<int>();
    ASSERT_TRUE(i >= 0 && i < 3) << d;
    const json& delta = c["choices"][0]["delta"];
    roles[size_t(i)] += delta.contains("role");
    streamed[size_t(i)] += delta.value("content", "");
    if (c["choices"][0]["finish_reason"].is_string()) {
      EXPECT_EQ(finishes[size_t(i)], 0) << "choice " << i << " finished twice";
      finishes[size_t(i)]++;
    }
  }
  EXPECT_EQ(streamed, texts);
  EXPECT_EQ(roles, std::vector<int>(3, 1));
  EXPECT_EQ(finishes, std::vector<int>(3, 1));
  EXPECT_EQ(usage["completion_tokens"], 18);

  // Greedy choices are all the same answer; completions take n too.
  json g = chat_body("Tell me a story.", 5);
  g["n"] = 2;
  const json gj = json::parse(post(s, "/v1/chat/completions", g.dump()).body);
  ASSERT_EQ(gj["choices"].size(), 2u);
  EXPECT_EQ(gj["choices"][0]["message"], gj["choices"][1]["message"]);
  const json cj = json::parse(post(s, "/v1/completions", json{{"prompt", "Once"}, {"max_tokens", 3}, {"n", 2},
                                                               {"ignore_eos", true}, {"seed", 1}}.dump()).body);
  ASSERT_EQ(cj["choices"].size(), 2u);
  EXPECT_EQ(cj["choices"][1]["index"], 1);
  EXPECT_EQ(cj["usage"]["completion_tokens"], 6);
}

}  // namespace
}  // namespace dsv3::test
