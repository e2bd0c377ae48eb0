// Scripting commands over the tokenizer files alone (no weights): tokenize, detokenize and
// chat-template, each reading JSON lines on stdin and writing JSON lines on stdout.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"

namespace dsv3::cli {

namespace {

using nlohmann::json;

// Runs fn on every non-empty stdin line parsed as a JSON object; errors name the line number.
int for_each_json_line(const std::function<json(const json&)>& fn) {
  std::string line;
  for (int64_t n = 1; std::getline(std::cin, line); ++n) {
    if (line.empty()) continue;
    json in = json::parse(line, nullptr, false);
    DSV3_CHECK(!in.is_discarded() && in.is_object(), "stdin line ", n, ": not a JSON object");
    try {
      std::cout << fn(in).dump() << "\n";
    } catch (const Error& e) {
      fail("stdin line ", n, ": ", e.what());
    } catch (const json::exception& e) {
      fail("stdin line ", n, ": ", e.what());
    }
  }
  std::cout.flush();
  return 0;
}

CLI::App* add_jsonl_command(CLI::App& app, const char* name, const char* help, std::string& model) {
  auto* cmd = app.add_subcommand(name, help);
  cmd->add_option("--model", model, "Folder with tokenizer.json and tokenizer_config.json (weights not needed)")
      ->required();
  static bool jsonl = false;
  cmd->add_flag("--jsonl", jsonl, "JSON lines on stdin and stdout (the only format)")->required();
  return cmd;
}

}  // namespace

Run add_tokenize(CLI::App& app) {
  auto model = std::make_shared<std::string>();
  add_jsonl_command(app, "tokenize", "Text to token ids: {\"text\", \"add_special\"?} -> {\"ids\"}", *model);
  return [model] {
    const Tokenizer tok = load_tokenizer(*model);
    return for_each_json_line([&](const json& in) {
      DSV3_CHECK(in.contains("text") && in["text"].is_string(), "missing string field 'text'");
      const bool special = in.value("add_special", false);
      return json{{"ids", tok.encode(in["text"].get<std::string>(), special)}};
    });
  };
}

Run add_detokenize(CLI::App& app) {
  auto model = std::make_shared<std::string>();
  add_jsonl_command(app, "detokenize", "Token ids to text: {\"ids\", \"skip_special\"?} -> {\"text\"}", *model);
  return [model] {
    const Tokenizer tok = load_tokenizer(*model);
    return for_each_json_line([&](const json& in) {
      DSV3_CHECK(in.contains("ids") && in["ids"].is_array(), "missing array field 'ids'");
      std::vector<int32_t> ids;
      for (const auto& v : in["ids"]) {
        DSV3_CHECK(v.is_number_integer(), "'ids' must hold integers");
        ids.push_back(v.get<int32_t>());
      }
      return json{{"text", tok.decode(ids, in.value("skip_special", false))}};
    });
  };
}

Run add_chat_template(CLI::App& app) {
  auto model = std::make_shared<std::string>();
  add_jsonl_command(app, "chat-template",
                    "Render conversations: {\"messages\", \"add_generation_prompt\"} -> {\"text\", \"ids\"}", *model);
  return [model] {
    const Tokenizer tok = load_tokenizer(*model);
    const ChatTemplate tmpl = load_chat_template(*model);
    return for_each_json_line([&](const json& in) {
      DSV3_CHECK(in.contains("messages") && in["messages"].is_array(), "missing array field 'messages'");
      const auto msgs = chat_messages_from_json(in["messages"]);
      const std::string text = tmpl.render(msgs, in.value("add_generation_prompt", false));
      return json{{"text", text}, {"ids", tok.encode(text)}};
    });
  };
}

}  // namespace dsv3::cli
