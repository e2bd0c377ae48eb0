// Subcommands of the dsv3 binary. Each registers its options on the app and returns the
// function to run when it is chosen.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dsv3::cli {

using Run = std::function<int()>;

Run add_inspect(CLI::App& app);
Run add_logits(CLI::App& app);
Run add_generate(CLI::App& app);
Run add_synth(CLI::App& app);
Run add_chat(CLI::App& app);
Run add_bench(CLI::App& app);
Run add_tokenize(CLI::App& app);
Run add_detokenize(CLI::App& app);
Run add_chat_template(CLI::App& app);
Run add_train(CLI::App& app);
Run add_train_tokenizer(CLI::App& app);
Run add_train_bench(CLI::App& app);
Run add_serve(CLI::App& app);
Run add_convert(CLI::App& app);
Run add_perplexity(CLI::App& app);
Run add_quantize(CLI::App& app);

// "0,17,42" -> {0, 17, 42}; throws dsv3::Error naming `flag` on anything else.
std::vector<int32_t> parse_ids(const std::string& s, const std::string& flag);
// Adds -t/--threads (default: all hardware threads).
void add_threads_option(CLI::App* cmd, int& threads);

}  // namespace dsv3::cli
