"""Qwen3's chat template: the Python reading equals the official Jinja template, byte for byte."""

import json

import pytest

from tracer import TracerError
from tracer.cli import main
from tracer.text.chat import official_template, parse_reply, render_chat, render_jinja, thinking_mode

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "查天氣 / weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

CONVERSATIONS = {
    "system prompt": [
        {"role": "system", "content": "/no_think"},
        {"role": "user", "content": "把「明天交報告」加上一個禮貌用語，只輸出那個禮貌用語。"},
    ],
    "tools, calls and responses": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "台北和東京的天氣?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "台北"}}},
            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"東京\"}"}}]},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": "tool", "content": "{\"temp\": 15}"},
        {"role": "assistant", "content": "<think>\nBoth answered.\n</think>\n\n台北 21°C, 東京 15°C."},
        {"role": "user", "content": "Thanks"},
    ],
    "multi-step tool call in the last turn": [
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "Let me add.", "reasoning_content": "Use the tool.",
         "tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]},
        {"role": "tool", "content": "5"},
    ],
    "multi-turn with earlier thinking": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "<think>\nGreet back.\n</think>\n\nHello!"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "Simple sum."},
        {"role": "user", "content": "/think and 3+3?"},
    ],
}


@pytest.mark.parametrize("name", CONVERSATIONS)
@pytest.mark.parametrize("enable_thinking", [True, False])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_python_template_equals_official_jinja(name, enable_thinking, add_generation_prompt):
    messages = CONVERSATIONS[name]
    tools = [WEATHER_TOOL] if "tools" in name else None
    ours = render_chat(messages, tools, add_generation_prompt, enable_thinking)
    official = render_jinja(official_template(), messages, tools, add_generation_prompt, enable_thinking)
    assert ours == official


def test_known_renderings():
    """Literal ChatML as Qwen3 checkpoints produce it (typed in)."""
    hi = [{"role": "user", "content": "hi"}]
    assert render_chat(hi) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert render_chat(hi, enable_thinking=False) == \
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    multi = render_chat(CONVERSATIONS["multi-turn with earlier thinking"])
    assert "<|im_start|>assistant\nHello!<|im_end|>\n" in multi  # earlier thinking is dropped
    assert "Greet back" not in multi and "Simple sum" not in multi


def test_tools_block_matches_seed_000():
    """Seed 000 (Tool Calling) prints the system block of the template; ours must say the same words."""
    text = render_chat([{"role": "user", "content": "q"}], [WEATHER_TOOL])
    assert text.startswith("<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user "
                           "query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n")
    assert ("\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
            "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
            "<args-json-object>}\n</tool_call><|im_end|>\n") in text
    assert json.dumps(WEATHER_TOOL, ensure_ascii=False) in text


def test_parse_reply():
    r = parse_reply("<think>\nplan\n</think>\n\nSure.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>"
                    "<|im_end|>")
    assert (r.thinking, r.content, r.tool_calls) == ("plan", "Sure.", [{"name": "f", "arguments": {}}])
    assert parse_reply("plain").thinking is None


def test_soft_switches():
    assert thinking_mode(CONVERSATIONS["system prompt"], True).startswith("off (soft switch /no_think")
    assert thinking_mode(CONVERSATIONS["multi-turn with earlier thinking"], True).startswith("on (soft switch /think")
    assert thinking_mode(CONVERSATIONS["system prompt"], False).startswith("off (enable_thinking=False")


def test_cli_chat_json(tmp_path, capsys):
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps(CONVERSATIONS["system prompt"], ensure_ascii=False), encoding="utf-8")
    assert main(["chat", "--messages", str(messages), "--no-thinking", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["text"] == render_chat(CONVERSATIONS["system prompt"], enable_thinking=False)
    assert out["ids"][:3] == [151644, 8948, 198] and out["ids"][-4:] == [151667, 271, 151668, 271]


@pytest.mark.parametrize("content, message", [
    ("not json", "is not valid JSON"),
    ('{"role": "user"}', "non-empty JSON list"),
    ('[{"role": "robot", "content": "x"}]', "needs a role of"),
    ('[{"role": "user", "content": 3}]', "content must be a string"),
    ('[{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]', "needs a name and arguments"),
])
def test_malformed_chat_json(tmp_path, capsys, content, message):
    path = tmp_path / "m.json"
    path.write_text(content, encoding="utf-8")
    assert main(["chat", "--messages", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_messages_file(capsys, tmp_path):
    assert main(["chat", "--messages", str(tmp_path / "none.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_template_errors_are_one_line():
    with pytest.raises(TracerError, match="chat template"):
        render_jinja("{{ raise_exception('no system role') }}", [{"role": "user", "content": "x"}])
