#!/usr/bin/env python3
"""Writes cases-0324.jsonl: conversations rendered by DeepSeek-V3-0324's published chat template
(deepseek-v3-0324.jinja, see README.md for its source) with Jinja2 set up as Hugging Face's
apply_chat_template sets it up. Needs python3-jinja2; run from this folder."""
import json

import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters["tojson"] = tojson
template = env.from_string(open("deepseek-v3-0324.jinja", encoding="utf-8").read())


def call(i, name, args):
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}


conversations = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "A"}, {"role": "system", "content": "B"}, {"role": "user", "content": "hi"}],
    [{"role": "user", "content": "Why is the sky blue?"},
     {"role": "assistant", "content": "<think>Rayleigh.</think>Because of Rayleigh scattering."},
     {"role": "user", "content": "And sunsets?"}],
    # One call: closed with <｜tool▁calls▁end｜>, unlike V3's template.
    [{"role": "user", "content": "Weather in Paris?"},
     {"role": "assistant", "content": None, "tool_calls": [call(0, "get_weather", {"city": "Paris"})]},
     {"role": "tool", "tool_call_id": "call_0", "content": "{\"temp\": 18}"},
     {"role": "assistant", "content": "It is 18 °C in Paris."}],
    # Content before the calls; two calls; two outputs; the answer after them.
    [{"role": "system", "content": "Use tools."},
     {"role": "user", "content": "Rome and Oslo, in F?"},
     {"role": "assistant", "content": "Let me check.",
      "tool_calls": [call(1, "get_weather", {"city": "Rome", "unit": "F"}), call(2, "get_weather", {"city": "Oslo", "unit": "F"})]},
     {"role": "tool", "tool_call_id": "call_1", "content": "64"},
     {"role": "tool", "tool_call_id": "call_2", "content": "41"}],
    # A second call turn right after tool outputs (no user turn between), then a user turn.
    [{"role": "user", "content": "Look it up: 東京"},
     {"role": "assistant", "content": None, "tool_calls": [call(3, "search", {"q": "東京", "note": "a \"quoted\"\nline"})]},
     {"role": "tool", "tool_call_id": "call_3", "content": "晴れ 21"},
     {"role": "assistant", "content": None, "tool_calls": [call(4, "get_weather", {"city": "東京"})]},
     {"role": "tool", "tool_call_id": "call_4", "content": "21"},
     {"role": "assistant", "content": "Sunny, 21."},
     {"role": "user", "content": "Thanks"}],
    # An empty tool_calls list still closes the (empty) call block.
    [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "ignored", "tool_calls": []}],
]

with open("cases-0324.jsonl", "w", encoding="utf-8") as out:
    for messages in conversations:
        for add_generation_prompt in (True, False):
            rendered = template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                       bos_token="<｜begin▁of▁sentence｜>", eos_token="<｜end▁of▁sentence｜>")
            out.write(json.dumps({"template": "deepseek-v3-0324", "messages": messages,
                                  "add_generation_prompt": add_generation_prompt, "rendered": rendered},
                                 ensure_ascii=False) + "\n")
