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
// Lines are read as ordered_json so objects keep their key order (tool-call arguments are
// rendered with it).
int for_each_json_line(const std::function<json(const nlohmann::ordered_json&)>& fn) {
  std::string line;
  for (int64_t n = 1; std::getline(std::cin, line); ++n) {
    if (line.empty()) continue;
    const auto in = nlohmann::ordered_json::parse(line, nullptr, false);
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
  cmd->add_option("--model", model, "Folder with tokenizer.json and tokenizer_config.json (weights not needed), or a GGUF file")
      ->required();
  static bool jsonl = false;
  cmd->add_flag("--jsonl", jsonl, "JSON lines on stdin and stdout (the only format)")->required();
  return cmd;
}

// The template variables of one chat-template line, read as the server reads a request:
// chat_template_kwargs ({"thinking": true}), or DeepSeek's API spelling "thinking": {"type":
// "enabled"} (a plain boolean "thinking" is taken too).
ChatTemplateArgs template_args(const nlohmann::ordered_json& in) {
  ChatTemplateArgs args;
  args.add_generation_prompt = in.value("add_generation_prompt", false);
  if (in.contains("chat_template_kwargs")) args.thinking = thinking_from_kwargs(in["chat_template_kwargs"]);
  if (in.contains("thinking") && !in["thinking"].is_null()) {
    const auto& t = in["thinking"];
    DSV3_CHECK(t.is_boolean() || (t.is_object() && t.contains("type") && t["type"].is_string()),
               "'thinking' must be a boolean or {\"type\": \"enabled\" | \"disabled\"}");
    args.thinking = t.is_boolean() ? t.get<bool>() : t["type"] == "enabled";
  }
  return args;
}

}  // namespace

Run add_tokenize(CLI::App& app) {
  auto model = std::make_shared<std::string>();
  add_jsonl_command(app, "tokenize", "Text to token ids: {\"text\", \"add_special\"?} -> {\"ids\"}", *model);
  return [model] {
    const Tokenizer tok = load_tokenizer(*model);
    return for_each_json_line([&](const nlohmann::ordered_json& in) {
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
    return for_each_json_line([&](const nlohmann::ordered_json& in) {
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
  auto template_file = std::make_shared<std::string>();
  auto* cmd = add_jsonl_command(app, "chat-template",
                                "Render conversations: {\"messages\", \"add_generation_prompt\", "
                                "\"chat_template_kwargs\"?} -> {\"text\", \"ids\"}",
                                *model);
  cmd->add_option("--chat-template-file", *template_file,
                  "Jinja chat template to use instead of tokenizer_config.json's (its family is recognised from "
                  "the text: DeepSeek-V3, R1, V3-0324, R1-0528, V3.1)");
  return [model, template_file] {
    const Tokenizer tok = load_tokenizer(*model);
    const ChatTemplate tmpl = load_chat_template(*model, *template_file);
    return for_each_json_line([&](const nlohmann::ordered_json& in) {
      DSV3_CHECK(in.contains("messages") && in["messages"].is_array(), "missing array field 'messages'");
      const auto msgs = chat_messages_from_json(in["messages"]);
      const std::string text = tmpl.render(msgs, template_args(in));
      return json{{"text", text}, {"ids", tok.encode(text)}};
    });
  };
}

}  // namespace dsv3::cli
