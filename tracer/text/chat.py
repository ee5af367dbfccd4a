"""Qwen3's chat template (ChatML with tools and thinking), written out in Python, plus Jinja rendering.

``render_chat`` is a line-by-line Python reading of the official Qwen3 template (kept verbatim in
``templates/qwen3.jinja``), so a student can see what each part of the prompt comes from. A checkpoint
that ships its own template is rendered with jinja2 the way ``transformers`` does (``render_jinja``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tracer import Message, TracerError, os_reason
from tracer.i18n import t

ROLES = ("system", "user", "assistant", "tool")
TOOLS_HEADER = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
TOOLS_FOOTER = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments "
                "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n')
EMPTY_THINK = "<think>\n\n</think>\n\n"


def official_template() -> str:
    """The chat template shipped with Qwen3 checkpoints (``tokenizer_config.json`` ``chat_template``)."""
    return resources.files("tracer.text").joinpath("templates/qwen3.jinja").read_text(encoding="utf-8").removesuffix("\n")


def tojson(value: Any) -> str:
    """Jinja's ``tojson`` as ``transformers`` defines it: ``json.dumps`` keeping non-ASCII characters."""
    return json.dumps(value, ensure_ascii=False)


def render_chat(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                add_generation_prompt: bool = True, enable_thinking: bool = True) -> str:
    """The prompt text Qwen3's template makes of a conversation (identical to rendering the template)."""
    check_messages(messages, tools)
    out: list[str] = []
    first_is_system = bool(messages) and messages[0]["role"] == "system"
    # 1. System turn: the tools block (with any system prompt in front of it), or the system prompt alone.
    if tools:
        out.append("<|im_start|>system\n")
        if first_is_system:
            out.append(messages[0]["content"] + "\n\n")
        out.append(TOOLS_HEADER + "".join("\n" + tojson(tool) for tool in tools) + TOOLS_FOOTER)
    elif first_is_system:
        out.append("<|im_start|>system\n" + messages[0]["content"] + "<|im_end|>\n")
    # 2. The last real user query (tool responses sent as user turns do not count): thinking is shown only
    #    for assistant turns after it.
    last_query = len(messages) - 1
    for index in range(len(messages) - 1, -1, -1):
        m = messages[index]
        if m["role"] == "user" and isinstance(m.get("content"), str) and not _is_tool_response(m["content"]):
            last_query = index
            break
    # 3. The turns.
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m.get("content"), str) else ""
        role = m["role"]
        if role == "user" or (role == "system" and i > 0):
            out.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
        elif role == "assistant":
            reasoning = ""
            if isinstance(m.get("reasoning_content"), str):
                reasoning = m["reasoning_content"]
            elif "</think>" in content:
                reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
                content = content.split("</think>")[-1].lstrip("\n")
            if i > last_query and (i == len(messages) - 1 or reasoning):
                out.append("<|im_start|>assistant\n<think>\n" + reasoning.strip("\n") + "\n</think>\n\n"
                           + content.lstrip("\n"))
            else:
                out.append("<|im_start|>assistant\n" + content)
            for j, call in enumerate(m.get("tool_calls") or []):
                if j > 0 or content:
                    out.append("\n")
                call = call.get("function") or call
                args = call["arguments"] if isinstance(call["arguments"], str) else tojson(call["arguments"])
                out.append('<tool_call>\n{"name": "' + str(call["name"]) + '", "arguments": ' + args + "}\n</tool_call>")
            out.append("<|im_end|>\n")
        elif role == "tool":
            if i == 0 or messages[i - 1]["role"] != "tool":
                out.append("<|im_start|>user")
            out.append("\n<tool_response>\n" + content + "\n</tool_response>")
            if i == len(messages) - 1 or messages[i + 1]["role"] != "tool":
                out.append("<|im_end|>\n")
    # 4. The opening of the assistant's reply; thinking off pre-fills an empty think block.
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
        if not enable_thinking:
            out.append(EMPTY_THINK)
    return "".join(out)


def _is_tool_response(text: str) -> bool:
    return text.startswith("<tool_response>") and text.endswith("</tool_response>")


def render_jinja(template: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                 add_generation_prompt: bool = True, enable_thinking: bool = True) -> str:
    """Render a chat template as ``transformers``' ``apply_chat_template`` does (sandboxed jinja2)."""
    try:
        from jinja2 import TemplateError
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise TracerError.of("errors.needs_jinja2") from None

    def raise_exception(message: str) -> None:
        raise TracerError.of("errors.template_refused", message=message)

    from tracer.safety.limits import bounded_sandbox, render_bounded

    sandbox = bounded_sandbox(ImmutableSandboxedEnvironment)
    env = sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals["raise_exception"] = raise_exception
    try:
        compiled = env.from_string(template)
        context = dict(messages=messages, tools=tools, add_generation_prompt=add_generation_prompt,
                       enable_thinking=enable_thinking, bos_token="", eos_token="<|im_end|>")
        return render_bounded(compiled, context)
    except (TemplateError, RecursionError, TypeError, ValueError, AttributeError) as exc:
        raise TracerError.of("errors.template_failed", detail=exc) from None


def checkpoint_template(directory: Path) -> str | None:
    """A checkpoint's chat template: ``chat_template.jinja``, else ``tokenizer_config.json``'s entry."""
    jinja_file = directory / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    config_file = directory / "tokenizer_config.json"
    if config_file.is_file():
        try:
            template = json.loads(config_file.read_text(encoding="utf-8")).get("chat_template")
        except (ValueError, AttributeError) as exc:
            raise TracerError.of("errors.invalid_json_detail", path=config_file, detail=exc) from None
        if isinstance(template, list):  # several named templates: take the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        return template if isinstance(template, str) else None
    return None


def check_messages(messages: Any, tools: Any = None) -> None:
    """A clear one-line error for anything that is not a list of chat messages."""
    if not isinstance(messages, list) or not messages:
        raise TracerError.of("errors.messages_not_list")
    for n, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            shown = json.dumps(m, ensure_ascii=False)[:80] if isinstance(m, dict) else type(m).__name__
            raise TracerError.of("errors.message_role", n=n, roles=", ".join(ROLES), got=shown)
        content = m.get("content")
        if content is not None and not isinstance(content, str):
            raise TracerError.of("errors.message_content", n=n)
        for k, call in enumerate(m.get("tool_calls") or []):
            fn = call.get("function", call) if isinstance(call, dict) else None
            if not isinstance(fn, dict) or "name" not in fn or "arguments" not in fn:
                raise TracerError.of("errors.tool_call", n=n, k=k)
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise TracerError.of("errors.tools_not_list")


def load_json_file(path: str | Path, what: str) -> Any:
    from tracer.safety.safefiles import regular_file

    p = Path(path)
    if p.is_dir():
        raise TracerError.of("safety.is_directory", what=Message("errors.what_file", what=what), path=p)
    if p.exists() and not regular_file(p):
        raise TracerError.of("safety.cannot_read", what=Message("errors.what_file", what=what), path=p,
                             reason=Message("errors.not_regular_json"))
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TracerError.of("errors.json_file_missing", what=what, path=p) from None
    except OSError as exc:
        raise TracerError.of("errors.json_file_unreadable", what=what, path=p,
                             reason=os_reason(exc)) from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TracerError.of("errors.json_file_invalid", what=what, path=p, kind=type(exc).__name__) from None


def thinking_mode(messages: list[dict[str, Any]], enable_thinking: bool, lang: str = "en") -> str:
    """How the reply will start, in ``lang``: the hard switch wins; else the last /think or /no_think soft switch."""
    if not enable_thinking:
        return t("cli.thinking_off_hard", lang)
    for m in reversed(messages):
        if m.get("role") in ("user", "system") and isinstance(m.get("content"), str):
            found = re.findall(r"/(no_think|think)\b", m["content"])
            if found:
                return t("cli.thinking_off_soft" if found[-1] == "no_think" else "cli.thinking_on_soft", lang)
    return t("cli.thinking_on_default", lang)


@dataclass
class Reply:
    """A generated assistant reply split into its parts."""

    thinking: str | None
    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def parse_reply(text: str) -> Reply:
    """Split a reply into thinking, content and tool calls (JSON objects inside <tool_call> tags).

    >>> r = parse_reply('<think>\\nadd\\n</think>\\n\\n<tool_call>\\n{"name": "f", "arguments": {"x": 1}}\\n</tool_call>')
    >>> r.thinking, r.content, r.tool_calls
    ('add', '', [{'name': 'f', 'arguments': {'x': 1}}])
    """
    text = text.removesuffix("<|im_end|>").removesuffix("<|endoftext|>")
    thinking = None
    if "</think>" in text:
        head, text = text.split("</think>", 1)
        thinking = head.split("<think>")[-1].strip("\n")
    calls = []
    for raw in re.findall(r"<tool_call>(.*?)</tool_call>", text, flags=re.S):
        try:
            calls.append(json.loads(raw.strip()))
        except ValueError:
            calls.append({"unparsed": raw.strip()})
    content = re.sub(r"<tool_call>.*?</tool_call>", "", text, flags=re.S).strip("\n")
    return Reply(thinking, content, calls)
