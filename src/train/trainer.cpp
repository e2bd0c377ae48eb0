#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <span>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "model/synth.h"
#include "train/bpe_trainer.h"
#include "train/data.h"
#include "train/data_parallel.h"
#include "train/model.h"
#include "train/rng.h"

namespace dsv3::train {

namespace fs = std::filesystem;

namespace {

// YaRN off (deepseek_v3_defaults has none): these models are trained at short context.
ModelConfig base_config() { return deepseek_v3_defaults(); }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DSV3_CHECK(in, path, ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Keeps the header and the rows of a CSV log whose first field (the step) is below `step`.
void truncate_log(const fs::path& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, out;
  bool header = true;
  while (std::getline(in, line)) {
    if (header || std::stoll(line.substr(0, line.find(','))) < step) out += line + "\n";
    header = false;
  }
  in.close();
  std::ofstream(path, std::ios::trunc) << out;
}

// What a run starts from: read and made by rank 0, received by the others.
struct RunStart {
  CheckpointFiles files;
  std::optional<Tokenizer> tok;  // rank 0
  Dataset data;                  // rank 0: the mapped token files
  std::vector<int32_t> train_ids, val_ids;  // the other ranks' copies of them
  std::span<const int32_t> train, val;      // the tokens, on every rank
  std::optional<Params<float>> p;
  std::optional<AdamW> adam;
  TrainState st;
  double unigram_bpb = 0;
};

// Rank 0: the run folder, tokenizer, token files, and the initial or resumed model and state.
void prepare_on_rank0(TrainOptions& o, RunStart& s, const std::function<void(const std::string&)>& say) {
  const fs::path out(o.out), ckpt = out / "checkpoint";
  std::error_code ec;
  fs::create_directories(out, ec);
  DSV3_CHECK(!ec && fs::is_directory(out), o.out, ": cannot create the run folder: ", ec.message());
  {
    const fs::path probe = out / ".write-test";
    std::ofstream f(probe);
    DSV3_CHECK(f && (f << "x"), o.out, ": the run folder is not writable");
    f.close();
    fs::remove(probe);
  }
  if (o.tokenizer.empty()) {
    const BpeResult bytes = train_bpe("a", min_vocab_size());
    s.files.tokenizer_json = bytes.tokenizer_json;
    s.files.tokenizer_config_json = bytes.tokenizer_config_json;
  } else {
    s.files.tokenizer_json = read_file(o.tokenizer);
    const fs::path cfg = fs::path(o.tokenizer).parent_path() / "tokenizer_config.json";
    if (fs::exists(cfg)) s.files.tokenizer_config_json = read_file(cfg.string());
  }
  const fs::path tok_path = out / "tokenizer.json";
  std::ofstream(tok_path, std::ios::binary) << s.files.tokenizer_json;
  s.tok = Tokenizer::from_file(tok_path);
  o.model.vocab_size = s.tok->vocab_size();
  check_trainable(o.model);
  s.data = prepare_data(o.text, *s.tok, fnv1a(s.files.tokenizer_json.data(), s.files.tokenizer_json.size()),
                        (out / "data").string(), o.seq_len + 2);
  s.train = {s.data.train.ids(), size_t(s.data.train.size())};
  s.val = {s.data.val.ids(), size_t(s.data.val.size())};
  s.unigram_bpb = unigram_bits_per_byte(s.data, o.model.vocab_size);
  say(str_cat("data: ", s.data.train.size(), " train tokens, ", s.data.val.size(), " validation tokens (",
              s.data.val_bytes, " bytes); vocab ", o.model.vocab_size, "; unigram baseline ", s.unigram_bpb,
              " bits/byte"));
  s.p.emplace(o.model);
  s.p->init(o.seed);
  s.adam.emplace(*s.p);
  s.st.seed = o.seed;
  s.st.options_json = o.to_json();
  if (o.resume && fs::exists(ckpt / "train_state.bin")) {
    TrainState saved;
    load_train_state(ckpt.string(), *s.p, *s.adam, saved);
    DSV3_CHECK(saved.options_json == s.st.options_json, ckpt.string(),
               ": was written with other settings; resume with the same options (or start a new --out)");
    s.st.step = saved.step;
    say(str_cat("resumed at step ", s.st.step));
  }
}

// Rank 0's vocabulary, weights, Adam moments, step and tokens to the other ranks: every rank
// starts from the same bits, whatever number of ranks wrote the checkpoint.
void share_from_rank0(Collectives& c, TrainOptions& o, RunStart& s) {
  if (c.size() == 1) return;
  const bool lead = c.rank() == 0;
  int64_t head[3] = {o.model.vocab_size, s.st.step, lead ? s.adam->t : 0};
  c.broadcast(head, sizeof head);
  if (lead) {
    s.train_ids.assign(s.train.begin(), s.train.end());
    s.val_ids.assign(s.val.begin(), s.val.end());
  } else {
    o.model.vocab_size = head[0];
    s.p.emplace(o.model);
    s.adam.emplace(*s.p);
    s.adam->t = head[2];
    s.st.step = head[1];
    s.st.seed = o.seed;
    s.st.options_json = o.to_json();
  }
  for (auto* v : {&s.p->data, &s.adam->m, &s.adam->v}) broadcast_vector(c, *v);
  broadcast_vector(c, s.train_ids);
  broadcast_vector(c, s.val_ids);
  if (lead) {  // rank 0 reads its mapped files
    s.train_ids = {};
    s.val_ids = {};
  } else {
    s.train = s.train_ids;
    s.val = s.val_ids;
  }
}

}  // namespace

std::string TrainOptions::to_json() const {
  nlohmann::ordered_json j;
  j["model"] = model.to_json();
  j["text"] = text;
  j["tokenizer"] = tokenizer;
  j["batch"] = batch;
  j["seq_len"] = seq_len;
  j["accum"] = accum;
  j["lr"] = optim.lr;
  j["min_lr_ratio"] = optim.min_lr_ratio;
  j["warmup"] = optim.warmup;
  j["steps"] = optim.steps;
  j["weight_decay"] = optim.weight_decay;
  j["clip"] = optim.clip;
  j["balance"] = balance_name(balance);
  j["balance_alpha"] = balance_alpha;
  j["bias_gamma"] = bias_gamma;
  j["mtp_lambda"] = mtp_lambda;
  j["precision"] = precision == Precision::FP8 ? "fp8" : "f32";
  j["seed"] = seed;
  return j.dump();
}

TrainOptions train_preset(const std::string& name) {
  TrainOptions o;
  ModelConfig& c = o.model = base_config();
  if (name == "test") {  // a few seconds on one core
    c.vocab_size = 0;    // from the tokenizer
    c.hidden_size = 32; c.intermediate_size = 64; c.moe_intermediate_size = 16;
    c.num_hidden_layers = 2; c.num_attention_heads = 2; c.n_routed_experts = 8; c.num_experts_per_tok = 2;
    c.n_group = 4; c.topk_group = 2; c.q_lora_rank = 16; c.kv_lora_rank = 16;
    c.qk_nope_head_dim = 8; c.qk_rope_head_dim = 8; c.v_head_dim = 8;
    o.batch = 4; o.seq_len = 32; o.optim.steps = 60; o.optim.warmup = 5; o.optim.lr = 1e-2;
    o.eval_every = 20; o.eval_tokens = 2048; o.save_every = 30; o.log_every = 5; o.threads = 1;
  } else if (name == "exp") {  // the experiments of docs/training.md: minutes per run
    c.vocab_size = 0;
    c.hidden_size = 128; c.intermediate_size = 384; c.moe_intermediate_size = 64;
    c.num_hidden_layers = 3; c.num_attention_heads = 4; c.n_routed_experts = 16; c.num_experts_per_tok = 4;
    c.n_group = 4; c.topk_group = 2; c.q_lora_rank = 64; c.kv_lora_rank = 32;
    c.qk_nope_head_dim = 16; c.qk_rope_head_dim = 16; c.v_head_dim = 16;
    o.batch = 8; o.seq_len = 128; o.optim.steps = 400; o.optim.warmup = 40; o.optim.lr = 3e-3;
    o.eval_every = 50; o.eval_tokens = 16384; o.save_every = 400; o.log_every = 10; o.threads = 2;
  } else if (name == "default") {  // the embedded model (docs/training.md)
    c.vocab_size = 0;
    c.hidden_size = 256; c.intermediate_size = 768; c.moe_intermediate_size = 128;
    c.num_hidden_layers = 4; c.num_attention_heads = 4; c.n_routed_experts = 16; c.num_experts_per_tok = 4;
    c.n_group = 4; c.topk_group = 2; c.q_lora_rank = 128; c.kv_lora_rank = 64;
    c.qk_nope_head_dim = 32; c.qk_rope_head_dim = 16; c.v_head_dim = 32;
    o.batch = 16; o.seq_len = 128; o.optim.steps = 1200; o.optim.warmup = 100; o.optim.lr = 3e-3;
    o.eval_every = 100; o.eval_tokens = 16384; o.save_every = 100; o.log_every = 10; o.threads = 2;
  } else {
    fail("unknown training preset '", name, "' (default, exp, test)");
  }
  return o;
}

void validate(const TrainOptions& o) {
  validate(o.optim);
  DSV3_CHECK(o.batch >= 1, "--batch must be >= 1, got ", o.batch);
  DSV3_CHECK(o.seq_len >= 1 && o.seq_len <= 8192, "--seq-len must be in [1, 8192], got ", o.seq_len);
  DSV3_CHECK(o.accum >= 1, "--accum must be >= 1, got ", o.accum);
  DSV3_CHECK(o.threads >= 1 && o.threads <= 1024, "--threads must be >= 1, got ", o.threads);
  DSV3_CHECK(o.balance_alpha >= 0, "--balance-alpha must be >= 0, got ", o.balance_alpha);
  DSV3_CHECK(o.bias_gamma >= 0, "--bias-gamma must be >= 0, got ", o.bias_gamma);
  DSV3_CHECK(o.mtp_lambda >= 0, "--mtp-lambda must be >= 0, got ", o.mtp_lambda);
  DSV3_CHECK(o.eval_every >= 1 && o.save_every >= 1 && o.log_every >= 1, "--eval-every, --save-every, --log-every must be >= 1");
  DSV3_CHECK(!o.text.empty(), "--data: no training text given");
  DSV3_CHECK(!o.out.empty(), "--out: no run folder given");
  const ModelConfig& c = o.model;
  DSV3_CHECK(c.hidden_size >= 1 && c.num_hidden_layers >= 1 && c.num_attention_heads >= 1 && c.kv_lora_rank >= 1 &&
                 c.v_head_dim >= 1 && c.qk_nope_head_dim >= 1 && c.qk_rope_head_dim >= 2,
             "model dimensions must be positive");
  check_trainable(c);
}

TrainResult run_training(const TrainOptions& opts, const std::atomic<bool>* stop, Collectives* comm) {
  TrainOptions o = opts;
  Collectives& coll = comm ? *comm : collectives();
  const int rank = coll.rank(), N = coll.size();
  const bool lead = rank == 0;  // rank 0 alone reads the text, writes files and prints
  auto say = [&](const std::string& s) {
    if (lead && !o.quiet) std::fprintf(stderr, "%s\n", s.c_str());
  };
  // Ranks started with other settings would run other collectives: refuse them first.
  const std::string control = str_cat(o.to_json(), o.eval_every, ",", o.eval_tokens, ",", o.save_every, ",",
                                      o.log_every, ",", o.stop_after, ",", o.resume);
  check_same_on_all_ranks(coll, fnv1a(control.data(), control.size()), "training settings");

  // Setup on rank 0 (the others only check the settings); an error on any rank ends all of them.
  RunStart start;
  TrainResult res;
  run_agreed(coll, [&] {
    validate(o);
    DSV3_CHECK(o.accum >= N, "--accum ", o.accum, ": each of the ", N, " ranks needs at least one micro-batch per step; ",
               "use --accum ", N, " or a multiple of it (--batch ", std::max<int64_t>(1, o.batch * o.accum / N),
               " --accum ", N, " keeps ", o.batch * o.accum, " sequences per step)");
    if (!lead) return;
    prepare_on_rank0(o, start, say);
    res.unigram_bpb = start.unigram_bpb;
    if (N > 1 && o.accum % N != 0)
      say(str_cat("note: ", o.accum, " micro-batches per step over ", N, " ranks: ", N - o.accum % N,
                  " of them idle in each step's last round"));
  });
  share_from_rank0(coll, o, start);
  const fs::path out(o.out), ckpt = out / "checkpoint";
  CheckpointFiles& files = start.files;
  const std::optional<Tokenizer>& tok = start.tok;
  const std::span<const int32_t> train_tok = start.train, val_tok = start.val;
  Params<float>& p = *start.p;
  AdamW& adam = *start.adam;
  TrainState& st = start.st;

  ThreadPool pool(o.threads);
  const Exec exec{&pool, o.precision};
  TrainModel<float> model(p, o.seq_len);
  const std::vector<int64_t> moe_ids = model.moe_layer_ids();
  const std::vector<float*> biases = model.moe_biases();
  const LossOptions train_loss{o.mtp_lambda, o.balance == Balance::None ? 0.0 : o.balance_alpha};
  const bool update_bias = o.balance == Balance::AuxFree && o.bias_gamma > 0;
  const int64_t E = o.model.n_routed_experts;
  const size_t n_loads = moe_ids.size() * size_t(E);

  const fs::path log_path = out / "train.csv", bal_path = out / "balance.csv";
  std::ofstream log, bal;
  if (lead) {
    if (st.step == 0) {
      std::ofstream(log_path, std::ios::trunc)
          << "step,lr,loss,mtp_loss,balance_loss,grad_norm,maxvio,val_loss,val_mtp_loss,val_bpb,tokens_per_s,elapsed_s\n";
      std::ofstream b(bal_path, std::ios::trunc);
      b << "step,layer,maxvio";
      for (int64_t e = 0; e < E; ++e) b << ",load_" << e;
      b << "\n";
    } else {
      truncate_log(log_path, st.step);
      truncate_log(bal_path, st.step);
    }
    log.open(log_path, std::ios::app);
    bal.open(bal_path, std::ios::app);
  }

  const int64_t S = o.seq_len + 2;
  std::vector<int32_t> batch(size_t(o.batch * S));
  // Validation over consecutive windows of the held-out tokens, up to `max_tokens` of them;
  // window batch i runs on rank i % N, and rank 0 adds the losses up in batch order.
  auto evaluate = [&](int64_t max_tokens, double* mtp_loss, double* bpb) {
    std::vector<std::pair<int64_t, int64_t>> batches;  // (first window start, rows)
    int64_t rows = 0;
    for (int64_t start = 0; start + S <= int64_t(val_tok.size()) && rows * o.seq_len < max_tokens;) {
      int64_t b = 0;
      const int64_t first = start;
      for (; b < o.batch && start + S <= int64_t(val_tok.size()); ++b, start += o.seq_len) {}
      batches.emplace_back(first, b);
      rows += b;
    }
    double nats = 0, mtp_nats = 0, bytes = 0;
    const int64_t nb = int64_t(batches.size());
    for (int64_t r = 0; r * N < nb; ++r) {
      double mine[2] = {0, 0};
      if (const int64_t i = r * N + rank; i < nb) {
        const auto [first, b] = batches[size_t(i)];
        for (int64_t k = 0; k < b; ++k)
          std::copy(val_tok.begin() + first + k * o.seq_len, val_tok.begin() + first + k * o.seq_len + S,
                    &batch[size_t(k * S)]);
        const LossParts l = model.run(exec, batch.data(), b, o.seq_len, LossOptions{o.mtp_lambda, 0}, 0, false);
        mine[0] = l.main * double(b * o.seq_len);
        mine[1] = l.mtp * double(b * o.seq_len);
      }
      std::vector<double> all(size_t(2 * N));
      coll.all_gather(mine, std::vector<size_t>(size_t(N), sizeof mine), all.data());
      for (int64_t k = 0; k < N && r * N + k < nb; ++k) {
        nats += all[size_t(2 * k)];
        mtp_nats += all[size_t(2 * k + 1)];
      }
    }
    if (lead)  // the bytes the predicted tokens stand for (rank 0 alone holds the tokenizer)
      for (const auto& [first, b] : batches)
        for (int64_t t = first + 1; t <= first + (b - 1) * o.seq_len + o.seq_len; ++t)
          bytes += double(tok->token_bytes(val_tok[size_t(t)]).size());
    const double n = double(rows * o.seq_len);
    *mtp_loss = mtp_nats / n;
    *bpb = nats / std::log(2.0) / bytes;
    return nats / n;
  };

  const auto t_start = std::chrono::steady_clock::now();
  auto save = [&] {
    if (!lead) return;
    files.readme = str_cat("# DeepSeek-V3-architecture model trained by dsv3\n\nTrained with `dsv3 train` for ", st.step,
                           " steps on ", fs::path(o.text).filename().string(), ".\nSettings: ", st.options_json, "\n");
    save_checkpoint(ckpt.string(), p, adam, st, o.save_dtype, files);
  };
  GradientFold fold(coll);
  const std::span<float> grad(p.grad);
  double window_tokens = 0, window_s = 0;
  const int64_t first_step = st.step;
  coll.reset_counters();
  for (; st.step < o.optim.steps; ) {
    if (o.stop_after > 0 && st.step - first_step >= o.stop_after) {
      save();
      break;
    }
    if (stop && (N == 1 ? stop->load() : any_rank(coll, stop->load()))) {
      save();
      res.interrupted = true;
      say(str_cat("interrupted: saved step ", st.step, " to ", ckpt.string()));
      break;
    }
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t step = st.step;
    // Micro-batch m runs on rank m % N; round r holds micro-batches rN .. rN + N - 1.
    std::vector<int64_t> loads(n_loads, 0);
    LossParts sum;
    const int64_t rounds = (o.accum + N - 1) / N;
    for (int64_t round = 0; round < rounds; ++round) {
      const int64_t micro = round * N + rank;
      p.zero_grad();
      MicroResult mine{{}, std::vector<int64_t>(n_loads, 0)};
      if (micro < o.accum) {
        Rng rng(hash_seed("batch", o.seed) ^ (uint64_t(step) * 0x9e3779b97f4a7c15ull) ^
                uint64_t(micro + 1) * 0xd1b54a32d192ed03ull);
        for (int64_t b = 0; b < o.batch; ++b) {
          const int64_t off = int64_t(rng.below(uint64_t(int64_t(train_tok.size()) - S + 1)));
          std::copy(train_tok.begin() + off, train_tok.begin() + off + S, &batch[size_t(b * S)]);
        }
        mine.loss = model.run(exec, batch.data(), o.batch, o.seq_len, train_loss, 1.0 / double(o.accum), true);
        const auto ld = model.loads();
        for (size_t i = 0; i < ld.size(); ++i) std::copy(ld[i].begin(), ld[i].end(), &mine.loads[i * size_t(E)]);
      }
      fold.add(grad, round, round + 1 == rounds);
      const std::vector<MicroResult> all = N == 1 ? std::vector<MicroResult>{mine} : exchange(coll, mine, n_loads);
      for (int64_t k = 0; k < N && round * N + k < o.accum; ++k) {
        const MicroResult& m = all[size_t(k)];
        sum.main += m.loss.main / double(o.accum);
        sum.mtp += m.loss.mtp / double(o.accum);
        sum.balance += m.loss.balance / double(o.accum);
        for (size_t i = 0; i < n_loads; ++i) loads[i] += m.loads[i];
      }
    }
    // Every rank holds the same global loss: all stop here together.
    if (!std::isfinite(sum.main))
      throw JobError(str_cat("training diverged at step ", step, " (loss ", sum.main, "); lower --lr"));
    const double lr = lr_at(o.optim, step);
    const double gnorm = adam.step(p, lr, o.optim, &pool);
    double maxvio = 0;
    int64_t counted = 0;
    for (size_t i = 0; i < moe_ids.size(); ++i) {
      // The global loads (every rank's micro-batches), so every rank moves its biases alike.
      const std::vector<int64_t> layer(loads.begin() + int64_t(i) * E, loads.begin() + int64_t(i + 1) * E);
      int64_t total = 0;
      for (int64_t v : layer) total += v;
      if (total == 0) continue;  // MTP block when the module is off
      if (update_bias && biases[i]) update_balance_bias(layer, o.bias_gamma, biases[i]);
      const double mv = max_violation(layer);
      maxvio += mv;
      ++counted;
      if (lead) {
        bal << step << "," << moe_ids[i] << "," << mv;
        for (int64_t v : layer) bal << "," << v;
        bal << "\n";
      }
    }
    if (counted) maxvio /= double(counted);
    st.step = step + 1;
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    window_tokens += double(o.batch * o.seq_len * o.accum);
    window_s += dt;
    res.last_loss = sum.main;

    const bool do_eval = st.step % o.eval_every == 0 || st.step == o.optim.steps;
    if (do_eval || st.step % o.log_every == 0 || step == 0) {
      const double tps = window_tokens / std::max(window_s, 1e-9);
      res.tokens_per_s = tps;
      const double comm = coll.seconds() / std::max(window_s, 1e-9);
      window_tokens = window_s = 0;
      coll.reset_counters();
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
      std::string line = str_cat("step ", st.step, "/", o.optim.steps, " loss ", sum.main, " mtp ", sum.mtp, " lr ", lr,
                                 " |g| ", gnorm, " maxvio ", maxvio, " ", int64_t(tps), " tok/s");
      if (N > 1) line += str_cat(" (", N, " ranks, ", int64_t(100 * comm), "% in collectives)");
      std::string row = str_cat(step, ",", lr, ",", sum.main, ",", sum.mtp, ",", sum.balance, ",", gnorm, ",", maxvio, ",");
      if (do_eval) {
        double vm = 0, bpb = 0;
        // The last evaluation covers the whole validation part.
        res.val_loss = evaluate(st.step == o.optim.steps ? int64_t(val_tok.size()) : o.eval_tokens, &vm, &bpb);
        res.val_bpb = bpb;
        row += str_cat(res.val_loss, ",", vm, ",", bpb);
        line += str_cat(" | val ", res.val_loss, " mtp ", vm, " bpb ", bpb);
      } else {
        row += ",,";
      }
      if (lead) {
        log << row << "," << tps << "," << elapsed << "\n";
        log.flush();
        bal.flush();
      }
      say(line);
    }
    if (st.step % o.save_every == 0 || st.step == o.optim.steps) save();
  }
  if (st.step == first_step && st.step >= o.optim.steps) {  // resuming a finished run: evaluate it
    double vm = 0;
    res.val_loss = evaluate(int64_t(val_tok.size()), &vm, &res.val_bpb);
    say(str_cat("finished run at step ", st.step, ": validation ", res.val_loss, " nats/token (MTP ", vm, "), ",
                res.val_bpb, " bits/byte over all ", val_tok.size(), " held-out tokens"));
  }
  res.steps_done = st.step;
  return res;
}

}  // namespace dsv3::train
