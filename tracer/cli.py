"""The ``tracer`` command line. Input errors print one line on stderr and exit with code 2."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

from tracer import Message, TracerError, __version__, os_reason
from tracer.commands.argtypes import finite_float, whole
from tracer.engine.model import Sampling
from tracer.i18n import LANG_CHOICES, catalog, normalize, pad, t, translator
from tracer.i18n import width as display_width
from tracer.text.chat import load_json_file, official_template, thinking_mode
from tracer.commands.run import (BACKENDS, DTYPES, Model, chat_prompt, encode_prompt, load_model, parse_token_list, render_messages,
                        run_trace)
from tracer.commands.train_cli import add_parser as add_train_step_parser
from tracer.commands.train_cli import train_step_command
from tracer.sources import source_text
from tracer.sources.presets import PRESETS
from tracer.text.tokenizer import VOCAB_SIZE as QWEN_VOCAB
from tracer.text.tokenizer import QwenTokenizer, Tokenizer, token_bytes
from tracer.traces.show import format_record, select
from tracer.traces.storage import STORE_DTYPES
from tracer.traces.tracefile import Trace, check_writable, load_trace, save_trace


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout with the word before the usage line in the chosen language."""

    def __init__(self, prog: str, lang: str = "en", **kwargs: Any) -> None:
        super().__init__(prog, **kwargs)
        self.lang = lang

    def add_usage(self, usage: str | None, actions: Any, groups: Any, prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, t("cli.usage", self.lang) if prefix is None else prefix)

    def _split_lines(self, text: str, width: int) -> list[str]:
        """Help text wrapped by terminal columns, with a break allowed between two CJK characters (argparse's
        wrapping counts characters and breaks only at spaces)."""
        if self.lang == "en":
            return super()._split_lines(text, width)
        lines, line = [], ""
        for unit in _WRAP_UNITS.findall(" ".join(text.split())):
            if line and unit.strip() and display_width(line + unit) > width:
                lines.append(line.rstrip())
                line = ""
            if line or unit.strip():
                line += unit
        return lines + [line.rstrip()] if line else lines


# a CJK character (with an opening bracket before it and closing punctuation after it), a run of spaces, or a word
_WRAP_UNITS = re.compile(r"[^\s\u2e80-\uffff]*[\u2e80-\uffff][,.;:)、。]*|\s+|[^\s\u2e80-\uffff]+")


# argparse's own error texts (Python 3.10+), each read into a catalog entry that says the same thing
ARGPARSE_ERRORS = (
    (re.compile(r"the following arguments are required: (?P<names>.+)"), "cli.argparse_required"),
    (re.compile(r"unrecognized arguments: (?P<args>.+)"), "cli.argparse_unrecognized"),
    (re.compile(r"argument (?P<arg>\S+): invalid choice: (?P<value>.+) \(choose from (?P<choices>.+)\)"),
     "cli.argparse_choice"),
    (re.compile(r"argument (?P<arg>\S+): invalid (?P<kind>\w+) value: (?P<value>.+)"), "cli.argparse_value"),
    (re.compile(r"argument (?P<arg>\S+): expected one argument"), "cli.argparse_one_value"),
    (re.compile(r"argument (?P<arg>\S+): expected at least one argument"), "cli.argparse_values"),
    (re.compile(r"argument (?P<arg>\S+): not allowed with argument (?P<other>\S+)"), "cli.argparse_not_with"),
    (re.compile(r"ambiguous option: (?P<option>\S+) could match (?P<matches>.+)"), "cli.argparse_ambiguous"),
)


def argparse_error(message: str) -> Message | str:
    """argparse's error text as a catalog message (in any language), or as it is when it is not a known one.

    >>> argparse_error("unrecognized arguments: --fast").text("zh-Hans")
    '无法识别的参数:--fast'
    """
    for pattern, key in ARGPARSE_ERRORS:
        found = pattern.fullmatch(message)
        if found:
            return Message(key, **found.groupdict())
    return message


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2 in ``main``) and its own words in ``lang``: the usage prefix,
    the section titles, ``--help`` and its usual error texts."""

    def __init__(self, *args: Any, lang: str = "en", **kwargs: Any) -> None:
        super().__init__(*args, add_help=False, formatter_class=partial(_Formatter, lang=lang), **kwargs)
        self.lang = lang
        self._positionals.title = t("cli.positionals", lang)
        self._optionals.title = t("cli.options", lang)
        self.add_argument("-h", "--help", action="help", default=argparse.SUPPRESS, help=t("cli.help_help", lang))

    def error(self, message: str) -> NoReturn:
        raise TracerError.of("errors.usage", prog=self.prog, message=argparse_error(message))


def help_texts(lang: str) -> Callable[..., str]:
    """``h(key, **values)``: the help text ``cli.KEY`` in ``lang``, escaped for argparse (``%`` -> ``%%``)."""
    def h(key: str, /, **values: Any) -> str:
        return t(f"cli.{key}", lang, **values).replace("%", "%%")

    return h


def build_parser(lang: str = "en") -> argparse.ArgumentParser:
    """The ``tracer`` parser with its help texts in ``lang``; every subcommand takes ``--lang``."""
    lang = normalize(lang)
    h = help_texts(lang)
    parser = _Parser(prog="tracer", description=t("cli.description", lang), lang=lang)
    parser.add_argument("--version", action="version", version=f"qwen3-tracer {__version__}", help=h("help_version"))
    parser.add_argument("--debug", action="store_true", help=h("help_debug"))
    parser.add_argument("--lang", choices=LANG_CHOICES, default="en", help=h("help_lang"))
    sub = parser.add_subparsers(dest="command", required=True, parser_class=partial(_Parser, lang=lang))

    tp = sub.add_parser("trace", help=h("cmd_trace"))
    tp.add_argument("model", help=h("help_model"))
    src = tp.add_mutually_exclusive_group()
    src.add_argument("--prompt", help=h("help_prompt"))
    src.add_argument("--tokens", help=h("help_tokens"))
    tp.add_argument("--chat", action="store_true", help=h("help_chat"))
    tp.add_argument("--image", action="append", default=[], metavar="FILE", help=h("help_image"))
    tp.add_argument("--system", help=h("help_system"))
    tp.add_argument("--no-thinking", action="store_true", help=h("help_no_thinking"))
    _model_args(tp, h)
    tp.add_argument("--round", type=int, metavar="N", help=h("help_round"))
    tp.add_argument("--capture", action="append", metavar="GLOB", help=h("help_capture"))
    tp.add_argument("--max-new-tokens", type=int, default=1, metavar="N", help=h("help_max_new_tokens"))
    tp.add_argument("--temperature", type=float, help=h("help_temperature"))
    tp.add_argument("--top-k", type=int, metavar="K", help=h("help_top_k"))
    tp.add_argument("--top-p", type=float, metavar="P", help=h("help_top_p"))
    tp.add_argument("--suppress", metavar="IDS", help=h("help_suppress"))
    tp.add_argument("--reference", metavar="MODEL", help=h("help_reference"))
    tp.add_argument("--stream", action="store_true", help=h("help_stream"))
    tp.add_argument("--out", required=True, metavar="FILE.npz", help=h("help_out_trace"))
    tp.add_argument("--store-dtype", choices=STORE_DTYPES, help=h("help_store_dtype"))
    tp.add_argument("--show", nargs="?", const="*", metavar="GLOB", help=h("help_show"))
    tp.add_argument("--max-memory", metavar="SIZE", help=h("help_max_memory"))
    tp.add_argument("--zero-head", action="append", metavar="L.H", help=h("help_zero_head"))
    tp.add_argument("--drop-expert", action="append", metavar="L.E", help=h("help_drop_expert"))
    tp.add_argument("--patch", action="append", metavar="NAME=FILE.npy", help=h("help_patch"))

    s = sub.add_parser("show", help=h("cmd_show"))
    s.add_argument("file", metavar="FILE.npz", help=h("help_file"))
    s.add_argument("pattern", nargs="?", metavar="NAME-GLOB", help=h("help_pattern"))
    s.add_argument("--decimals", type=whole("--decimals", 0, 12), default=3, help=h("help_decimals"))
    s.add_argument("--npy", metavar="OUT.npy", help=h("help_npy"))

    d = sub.add_parser("demo", help=h("cmd_demo"))
    d.add_argument("--out-dir", default="traces", help=h("help_out_dir"))
    d.add_argument("--round", type=whole("--round", 0, 12), metavar="N", help=h("help_round_demo"))

    k = sub.add_parser("tokenize", help=h("cmd_tokenize"))
    k.add_argument("text", help=h("help_text"))
    k.add_argument("--model", help=h("help_model_tokenizer"))
    k.add_argument("--json", action="store_true", help=h("help_json_tokenize"))

    c = sub.add_parser("chat", help=h("cmd_chat"))
    c.add_argument("--messages", required=True, metavar="FILE.json", help=h("help_messages"))
    c.add_argument("--tools", metavar="FILE.json", help=h("help_tools"))
    c.add_argument("--no-thinking", action="store_true", help=h("help_no_thinking_chat"))
    c.add_argument("--no-generation-prompt", action="store_true", help=h("help_no_generation_prompt"))
    c.add_argument("--model", help=h("help_model_template"))
    c.add_argument("--json", action="store_true", help=h("help_json_chat"))

    e = sub.add_parser("export", help=h("cmd_export"))
    e.add_argument("model", help=h("help_model"))
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=h("help_set"))
    e.add_argument("--seed", type=int, default=0, help=h("help_seed_weights"))
    e.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help=h("help_dtype_export"))
    e.add_argument("--max-shard-gb", type=finite_float("--max-shard-gb", 1e-9), default=2.0,
                   help=h("help_max_shard_gb"))
    e.add_argument("--format", choices=("safetensors", "gguf"), default="safetensors", help=h("help_format"))
    e.add_argument("--out", required=True, metavar=t("cli.metavar_out_export", lang), help=h("help_out_export"))

    q = sub.add_parser("quantize", help=h("cmd_quantize"))
    q.add_argument("model", help=h("help_model"))
    q.add_argument("--type", required=True, metavar="TYPE", help=h("help_type"))
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=h("help_set"))
    q.add_argument("--seed", type=int, default=0, help=h("help_seed_weights"))
    q.add_argument("--out", required=True, metavar="FILE.gguf", help=h("help_out_gguf"))

    r = sub.add_parser("compare", help=h("cmd_compare"))
    r.add_argument("a", metavar="A.npz", help=h("help_trace_a"))
    r.add_argument("b", metavar="B.npz", help=h("help_trace_b"))
    r.add_argument("--json", action="store_true", help=h("help_json_compare"))
    r.add_argument("--all", action="store_true", help=h("help_all"))

    a = sub.add_parser("app", help=h("cmd_app"))
    a.add_argument("trace", nargs="?", metavar="TRACE.npz", help=h("help_trace_app"))
    a.add_argument("--port", type=int, default=8501, help=h("help_port", port=8501))
    _server_args(a, h)
    a.add_argument("--traces-dir", metavar="DIR", help=h("help_traces_dir"))
    a.add_argument("--max-upload-mb", type=whole("--max-upload-mb", 1, 10_000), default=200, metavar="MB",
                   help=h("help_max_upload_mb"))
    a.add_argument("--max-memory", metavar="SIZE", help=h("help_max_memory_app"))
    a.add_argument("--workers", type=whole("--workers", 1, 64), default=2, metavar="N", help=h("help_workers"))

    nb = sub.add_parser("notebooks", help=h("cmd_notebooks"))
    nb.add_argument("--port", type=int, default=8888, help=h("help_port", port=8888))
    _server_args(nb, h)

    i = sub.add_parser("info", help=h("cmd_info"))
    i.add_argument("model", help=h("help_model"))
    i.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=h("help_set"))
    i.add_argument("--tokens", type=whole("--tokens", 1, 2**31), metavar="N", help=h("help_tokens_info"))
    i.add_argument("--max-memory", metavar="SIZE", help=h("help_max_memory_info"))
    i.add_argument("--context", type=int, metavar="N", help=h("help_context"))
    i.add_argument("--dtype", default=None, help=h("help_dtype_info"))
    i.add_argument("--batch", type=int, default=None, metavar="B", help=h("help_batch"))
    i.add_argument("--json", action="store_true", help=h("help_json_info"))
    add_train_step_parser(sub, h)
    for command in sub.choices.values():  # one --lang for all (output, help, errors); the top level's is the default
        command.add_argument("--lang", choices=LANG_CHOICES, default=argparse.SUPPRESS, help=h("help_lang"))
    return parser


def _server_args(p: argparse.ArgumentParser, h: Callable[..., str]) -> None:
    p.add_argument("--address", default="127.0.0.1", help=h("help_address"))
    p.add_argument("--password", help=h("help_password"))


def _model_args(p: argparse.ArgumentParser, h: Callable[..., str]) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=h("help_set"))
    p.add_argument("--seed", type=int, default=0, help=h("help_seed"))
    p.add_argument("--dtype", choices=("float32", "float64", "bfloat16", "float16"), default="float32",
                   help=h("help_dtype_trace"))
    p.add_argument("--backend", choices=BACKENDS, default="numpy", help=h("help_backend"))
    p.add_argument("--device", help=h("help_device"))


def cmd_train_step(args: argparse.Namespace) -> None:
    print(train_step_command(args))


def cmd_trace(args: argparse.Namespace) -> None:
    out = check_writable(args.out)
    if args.backend == "numpy" and args.dtype not in DTYPES:
        raise TracerError.of("errors.numpy_dtype", dtype=args.dtype)
    if args.device and args.backend != "torch":
        raise TracerError.of("errors.device_needs_torch")
    if args.stream and args.model in PRESETS:
        raise TracerError.of("sources.stream_preset", model=args.model)
    model = load_model(args.model, args.set, args.seed, args.dtype if args.dtype in DTYPES else "float32",
                       stream=args.stream)
    reference = load_model(args.reference, args.set, args.seed) if args.reference else None
    system = args.system if args.system is not None else model.defaults.get("system") if args.chat else None
    temperature = args.temperature if args.temperature is not None else model.defaults.get("temperature", 0.0)
    top_k = args.top_k if args.top_k is not None else model.defaults.get("top_k")
    top_p = args.top_p if args.top_p is not None else model.defaults.get("top_p")
    for warning in getattr(model.weights, "warnings", []):
        print(f"tracer: warning: {warning.text(args.lang)}", file=sys.stderr)
    prompt = args.prompt
    if args.image:
        from tracer.vision.placement import prompt_with_images

        if model.vision is None:
            raise TracerError.of("vision.err_text_only", model=args.model)
        if prompt is not None:
            prompt = prompt_with_images(prompt, len(args.image))
    if args.tokens is not None:
        if args.chat:
            raise TracerError.of("errors.chat_with_tokens")
        ids = parse_token_list(args.tokens)
    elif prompt is not None:
        if args.chat:
            if model.toy_vocab:
                raise TracerError.of("errors.chat_toy_vocab", model=args.model, vocab=" ".join(model.toy_vocab))
            if not prompt.strip():
                raise TracerError.of("errors.chat_prompt_empty")
            prompt = chat_prompt(model, prompt, system, not args.no_thinking)
        ids = encode_prompt(model, prompt)
    else:
        raise TracerError.of("errors.no_input")
    if (args.system or args.no_thinking) and not args.chat:
        raise TracerError.of("errors.system_needs_chat")
    suppress = tuple(parse_token_list(args.suppress, model)) if args.suppress else model.suppress_tokens
    sampling = Sampling(temperature, top_k, top_p, suppress, args.seed)
    from tracer.engine.interventions import from_flags

    interventions = from_flags(args.zero_head, args.drop_expert, args.patch)
    _check_run_budget(model, ids, args)
    trace = run_trace(model, ids, sampling=sampling, max_new_tokens=args.max_new_tokens,
                      round_decimals=args.round, capture=args.capture, prompt=prompt,
                      backend=args.backend, torch_dtype=args.dtype, device=args.device, images=args.image,
                      interventions=interventions or None)
    if reference is not None:
        from tracer.sources.quantize import with_quant_errors

        trace = with_quant_errors(trace, model, reference, args.capture)
    if args.capture and not trace.names:
        raise TracerError.of("errors.capture_nothing", globs=" ".join(args.capture))
    trace.path = save_trace(out, trace, args.store_dtype)
    if args.show:
        from tracer.safety.safefiles import escape_controls

        for name in select(trace, args.show):
            print(escape_controls(format_record(trace, name, args.lang)), end="\n\n")
    print(_summary(trace, args.lang))


def _check_run_budget(model: Model, ids: list[int], args: argparse.Namespace) -> None:
    """Refuse, before anything is allocated, a run whose estimated memory exceeds --max-memory."""
    from tracer.safety.budget import check_budget, default_budget, estimate, parse_size
    from tracer.commands.run import check_tokens

    check_tokens(model.cfg, ids, args.max_new_tokens)
    budget = parse_size(args.max_memory) if args.max_memory else default_budget()
    check_budget(estimate(model.cfg, len(ids), args.max_new_tokens, args.capture, args.dtype, args.backend), budget)


def _summary(trace: Trace, lang: str) -> str:
    """What a trace run computed and where it went, in ``lang`` (token texts and names as they are)."""
    m = trace.meta
    labels = [json.dumps(label, ensure_ascii=False)[1:-1] for label in m["token_labels"]]
    prompt = " ".join(labels if len(labels) <= 24 else labels[:10] + ["…"] + labels[-10:])
    new = ", ".join(f"{i} {json.dumps(label, ensure_ascii=False)}" if label != str(i) else str(i)
                    for i, label in zip(m["generated_ids"], m["generated_labels"]))
    steps = sum(1 for n in trace.names if n.startswith("decode.") and n.endswith(".tokens"))
    reason = str(m["stop_reason"])
    if f"cli.stop_{reason}" in catalog("en"):
        reason = t(f"cli.stop_{reason}", lang)
    return (t("cli.summary_tokens", lang, model=m["model"], count=len(m["token_ids"]), prompt=prompt, new=new) + "\n"
            + t("cli.summary_steps", lang, sampled=len(m["generated_ids"]), steps=steps, reason=reason,
                records=len(trace), path=trace.path))


def cmd_show(args: argparse.Namespace) -> None:
    from tracer.safety.safefiles import escape_controls

    trace = load_trace(args.file)
    if args.npy:
        from tracer.engine.interventions import export_record

        print(export_record(trace, args.pattern, args.npy, args.lang))
        return
    names = select(trace, args.pattern)
    if not names:
        raise TracerError.of("errors.no_matching_record", file=escape_controls(args.file), pattern=args.pattern)
    for name in names:
        print(escape_controls(format_record(trace, name, args.lang, args.decimals)), end="\n\n")


def cmd_demo(args: argparse.Namespace) -> None:
    from tracer.teaching.notes import notes_for

    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TracerError.of("safety.not_directory", flag="--out-dir", path=out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TracerError.of("errors.cannot_create_out_dir", path=out_dir,
                             reason=os_reason(exc)) from None
    for name, section in (("toy-dense", "§3"), ("toy-moe", "§4")):
        model = load_model(name)
        path = out_dir / f"{name}.npz"
        trace = run_trace(model, encode_prompt(model, "明天交報告"), round_decimals=args.round, prompt="明天交報告")
        trace.path = save_trace(path, trace)
        print(t("show.demo_header", args.lang, name=name, section=section, prompt="明天交報告") + "\n")
        for record in trace.names:
            print(format_record(trace, record, args.lang), end="\n\n")
        print(_summary(trace, args.lang))
        for kind, note in notes_for(trace.meta, "run", args.lang):
            print(f"{t('app.' + kind, args.lang)}: {note}")
        print()


def _text_tools(directory: str | None) -> tuple[Model | None, Tokenizer]:
    """The checkpoint (for its tokenizer and template) when one is named, else Qwen3's own tokenizer."""
    model = load_model(directory) if directory else None
    return model, (model.tokenizer if model else QwenTokenizer())


def cmd_tokenize(args: argparse.Namespace) -> None:
    _, tokenizer = _text_tools(args.model)
    ids = tokenizer.encode(args.text)
    labels = tokenizer.token_strings(ids)
    if args.json:
        print(json.dumps({"ids": ids, "tokens": labels}, ensure_ascii=False))
        return
    print(t("cli.token_count", args.lang, count=len(ids)))
    raws = token_bytes(tokenizer, ids) if isinstance(tokenizer, QwenTokenizer) else [""] * len(ids)
    for i, (tid, raw, label) in enumerate(zip(ids, raws, labels)):
        print(f"{i:5}  {tid:7}  {raw:24}  {json.dumps(label, ensure_ascii=False)}")


def cmd_chat(args: argparse.Namespace) -> None:
    messages = load_json_file(args.messages, "messages")
    tools = load_json_file(args.tools, "tools") if args.tools else None
    model = load_model(args.model) if args.model else None  # rendering needs the template, not a tokenizer
    system = model.defaults.get("system") if model is not None else None
    if system and isinstance(messages, list) and not any(isinstance(m, dict) and m.get("role") == "system"
                                                         for m in messages):
        messages = [{"role": "system", "content": system}, *messages]  # the model's default (Ollama system layer)
    text = render_messages(model, messages, tools, not args.no_generation_prompt, not args.no_thinking)
    if args.json:
        tokenizer = model.tokenizer if model else QwenTokenizer()
        print(json.dumps({"text": text, "ids": tokenizer.encode(text)}, ensure_ascii=False))
    else:
        print(text, end="" if text.endswith("\n") else "\n")
        print(t("cli.thinking", args.lang, mode=thinking_mode(messages, not args.no_thinking, args.lang)),
              file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> None:
    from tracer.sources.checkpoint import export_checkpoint

    out = Path(args.out)
    if args.format == "gguf":
        _write_gguf(args, "F32" if args.dtype == "float32" else "BF16")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TracerError.of("errors.out_not_empty", path=out)
    if args.max_shard_gb <= 0:
        raise TracerError.of("errors.must_be_positive", name="--max-shard-gb", value=args.max_shard_gb)
    model = load_model(args.model, args.set, args.seed)
    from tracer.safety.budget import check_budget, default_budget, estimate

    check_budget(estimate(model.cfg, 1, 1, [], "float32"), default_budget())
    # written into a hidden folder beside --out and renamed into place: never a half-written checkpoint
    if not out.parent.is_dir():
        raise TracerError.of("errors.no_parent_folder", path=out, folder=out.parent)
    import shutil

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if model.vision is not None:
            from tracer.vision.models import export_vision_checkpoint

            files = export_vision_checkpoint(model, tmp, args.dtype, int(args.max_shard_gb * 1024**3))
        else:
            files = export_checkpoint(model.cfg, model.weights, tmp, args.dtype, int(args.max_shard_gb * 1024**3))
        os.replace(tmp, out)
        files = [out / f.name for f in files]
    except OSError as exc:
        raise TracerError.of("sources.cannot_write", path=out, detail=os_reason(exc)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(t("cli.wrote_checkpoint", args.lang, model=model.name, source=source_text(model.source, args.lang),
            dtype=args.dtype, path=out, count=len(files)))


def _write_gguf(args: argparse.Namespace, qtype: str) -> None:
    from tracer.sources.quantize import QUANT_TYPES, kept_unquantized, write_gguf

    out = Path(args.out)
    if qtype not in QUANT_TYPES:
        raise TracerError.of("sources.quant_type_unknown", type=qtype, supported=", ".join(QUANT_TYPES))
    if out.suffix != ".gguf" or out.is_dir():
        raise TracerError.of("sources.out_not_gguf", path=out)
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise TracerError.of("errors.no_parent_folder", path=out, folder=folder)
    model = load_model(args.model, args.set, args.seed)
    if model.vision is not None:
        raise TracerError.of("vision.err_no_gguf", model=args.model)
    from tracer.safety.budget import check_budget, default_budget, estimate

    check_budget(estimate(model.cfg, 1, 1, [], "float32"), default_budget())  # every weight is made once
    kept, block = kept_unquantized(model.cfg, qtype)
    if kept:
        print(t("sources.quant_kept_f32", args.lang, count=len(kept), type=qtype, block=block, tensors=", ".join(kept)),
              file=sys.stderr)
    real_vocab = model.cfg.vocab_size >= QWEN_VOCAB and not model.toy_vocab
    counts = write_gguf(model.cfg, model.weights, out, qtype, Path(model.name).name, tokenizer=real_vocab,
                        chat_template=(model.chat_template or official_template()) if real_vocab else None)
    types = ", ".join(f"{k} ×{v}" for k, v in sorted(counts.items()))
    print(t("sources.wrote_gguf", args.lang, model=model.name, source=source_text(model.source, args.lang), path=out,
            types=types,
            size=out.stat().st_size / 2**20))


def cmd_quantize(args: argparse.Namespace) -> None:
    _write_gguf(args, args.type.upper())


def cmd_compare(args: argparse.Namespace) -> int:
    from tracer.traces.compare import compare_traces, first_divergence, tolerance

    a, b = load_trace(args.a, allow_nonfinite=True), load_trace(args.b, allow_nonfinite=True)
    rows = compare_traces(a, b)
    failed = any(r.verdict in ("DIFF", "SHAPE", "NONFINITE") for r in rows)
    if args.json:
        for row in rows:
            print(json.dumps(row.as_dict()))
        return 1 if failed else 0
    rtol, atol = tolerance(a, b)
    tr = translator(args.lang)
    for side, trace in (("A", a), ("B", b)):
        print(tr("compare.trace_line", side=side, path=trace.path, backend=trace.meta["backend"],
                 dtype=trace.meta["dtype"]))
    print(tr("compare.tolerance", rtol=rtol, atol=atol))
    for row in rows:
        if args.all or row.verdict != "OK":
            err = "" if row.max_abs is None else tr("compare.errors", max_abs=row.max_abs, max_rel=row.max_rel)
            print(f"{pad(row.verdict_text(args.lang), 8)} {row.name:52} {err} {row.note_text(args.lang)}".rstrip())
    counts = {v: sum(r.verdict == v for r in rows) for v in ("OK", "DIFF", "SHAPE", "MISSING", "NONFINITE")}
    print(", ".join(tr("compare.count", count=n, verdict=tr(f"compare.verdict_{v}")) for v, n in counts.items()))
    if counts["NONFINITE"]:
        print(tr("safety.nonfinite_verdict", count=counts["NONFINITE"]))
    first = first_divergence(rows)
    print(tr("compare.first_divergence", name=first.name) if first else tr("compare.agree"))
    return 1 if failed else 0


def cmd_app(args: argparse.Namespace) -> int:
    import os

    script = Path(__file__).resolve().parents[1] / "apps" / "explorer.py"
    if not script.is_file():
        raise TracerError.of("errors.explorer_missing", path=script)
    if importlib.util.find_spec("streamlit") is None:
        raise TracerError.of("errors.needs_streamlit")
    if not 0 < args.port < 65536:
        raise TracerError.of("errors.port_range", port=args.port)
    from tracer.safety.budget import default_budget, parse_size
    from tracer.safety.serve import app_environment, server_address

    address, password = server_address(args.address, args.password)
    env = dict(os.environ)
    env["QWEN3_TRACER_LANG"] = args.lang
    if args.trace:
        load_trace(args.trace).close()  # a one-line error now, rather than in the browser
        env["QWEN3_TRACER_TRACE"] = str(Path(args.trace).resolve())
    budget = parse_size(args.max_memory) if args.max_memory else default_budget() // args.workers
    env.update(app_environment(args.traces_dir, password, budget, args.workers, args.max_upload_mb))
    print(t("cli.app_started_password" if password else "cli.app_started", args.lang, address=address,
            port=args.port, folder=env["QWEN3_TRACER_TRACES_DIR"]), flush=True)
    return _become([sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
                    "--server.address", address, "--server.port", str(args.port),
                    "--server.maxUploadSize", str(args.max_upload_mb),
                    "--server.maxMessageSize", str(max(200, args.max_upload_mb)),
                    "--browser.gatherUsageStats", "false", "--client.showErrorDetails", "none",
                    "--server.fileWatcherType", "none", "--global.developmentMode", "false"], env)


def cmd_notebooks(args: argparse.Namespace) -> int:
    import os
    import shutil

    from tracer.safety.serve import server_address

    address, password = server_address(args.address, args.password)  # refuse an open room before any work
    folder = Path(__file__).resolve().parents[1] / "notebooks"
    if not folder.is_dir():
        raise TracerError.of("errors.notebooks_missing", path=folder)
    if shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)) is None:
        raise TracerError.of("errors.needs_jupyterlab")
    import jupytext

    # the notebooks are kept as percent-format .py files; make (or refresh) the paired .ipynb to open in the lab
    for source in sorted(folder.glob("[0-9][0-9]_*.py")):
        paired = source.with_suffix(".ipynb")
        if not paired.exists() or paired.stat().st_mtime < source.stat().st_mtime:
            notebook = jupytext.read(source)
            notebook.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
            jupytext.write(notebook, paired)
    os.environ["QWEN3_TRACER_LANG"] = args.lang  # the notebooks' kernels read it (tracer.teaching.classroom.language)
    print(t("cli.notebooks_started", args.lang, address=address, port=args.port, folder=folder), flush=True)
    # local only (127.0.0.1) needs no token; a room address uses the class password as the token (from the
    # environment, not the command line); root (containers, CI) must be allowed explicitly
    command = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={folder}", f"--port={args.port}", "--no-browser",
               f"--ServerApp.ip={address}"] + ([] if password else ["--IdentityProvider.token="])
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0  # POSIX only; Windows has no root
    return _become(command + (["--allow-root"] if is_root else []), dict(os.environ, JUPYTER_TOKEN=password or ""))


def _become(command: list[str], env: dict[str, str]) -> int:
    """Run a server in place of this command: exec on POSIX (stopping this command stops the server), a child
    process waited for where a process cannot be replaced (Windows)."""
    import os
    import subprocess

    if os.name == "posix":
        os.execve(command[0], command, env)
    return subprocess.call(command, env=env)


def cmd_info(args: argparse.Namespace) -> None:
    from tracer.sources.info import model_card

    model = load_model(args.model, args.set)
    if args.context is not None or args.json or args.dtype is not None or args.batch is not None:
        from tracer.engine.memory import memory_command

        print(memory_command(model.cfg, model.name, args.context, args.dtype, args.batch, args.json,
                             model.vision, args.lang))
        return
    print(model_card(model.cfg, model.name, args.lang))
    if model.vision is not None:
        from tracer.vision.models import vision_card

        print(vision_card(model, args.lang))
    for line in _note_lines(model, args.lang):
        print(line)
    if args.model not in PRESETS:
        from tracer.sources.load import source_lines

        print("\n".join(source_lines(model, args.lang)))
    if args.tokens is not None or args.max_memory:
        from tracer.safety.budget import estimate_report

        print(estimate_report(model.cfg, args.tokens or 16, args.max_memory, args.lang))


def _note_lines(model: Model, lang: str) -> list[str]:
    """The model's notes in ``lang``: a preset's from the notes catalog, a checkpoint's warnings from theirs."""
    from tracer.teaching.notes import preset_note

    warnings = {str(w): w for w in getattr(model.weights, "warnings", [])}
    lines = []
    for note in model.notes:
        if note in warnings:
            lines.append(t("cli.info_note", lang, text=warnings[note].text(lang)))
        else:
            kind, text, _ = preset_note(model.name, note, lang)
            lines.append(t("cli.info_erratum" if kind == "erratum" else "cli.info_note", lang, text=text))
    return lines


COMMANDS = {"trace": cmd_trace, "show": cmd_show, "demo": cmd_demo, "tokenize": cmd_tokenize, "chat": cmd_chat,
            "export": cmd_export, "quantize": cmd_quantize, "info": cmd_info, "compare": cmd_compare, "app": cmd_app,
            "notebooks": cmd_notebooks, "train-step": cmd_train_step}


def error_lang(argv: list[str], args: argparse.Namespace | None = None) -> str:
    """The language of the help texts and of an error line: the command's ``--lang`` as parsed, or as typed
    (``--lang X`` or ``--lang=X`` before ``--``) before parsing or when parsing itself failed; English without one,
    or for a tag that is not a language.

    >>> error_lang(["show", "t.npz", "--lang", "zh", "--decimals", "x"]), error_lang(["info", "--lang=fr"])
    ('zh-Hans', 'en')
    """
    lang = getattr(args, "lang", None)
    if lang is None:
        words = argv[:argv.index("--")] if "--" in argv else argv
        for i, word in enumerate(words):
            if word == "--lang" and i + 1 < len(words):
                lang = words[i + 1]
            elif word.startswith("--lang="):
                lang = word.partition("=")[2]
    try:
        return normalize(lang)
    except TracerError:
        return "en"


def main(argv: list[str] | None = None) -> int:
    from tracer.safety.serve import interrupt_on_sigterm, one_line

    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv[:argv.index("--") if "--" in argv else len(argv)]
    args: argparse.Namespace | None = None
    try:
        with interrupt_on_sigterm():
            args = build_parser(error_lang(argv)).parse_args(argv)
            code = COMMANDS[args.command](args)
    except TracerError as exc:
        if debug:
            raise
        print(f"tracer: error: {one_line(exc.text(error_lang(argv, args)))}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"tracer: error: {t('errors.out_of_memory', error_lang(argv, args))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tracer: {t('safety.interrupted', error_lang(argv, args))}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except RecursionError:
        if debug:
            raise
        print(f"tracer: error: {t('safety.too_deep', error_lang(argv, args))}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not an input error: still one line, the traceback behind --debug
        if debug:
            raise
        print(f"tracer: error: {t('safety.internal', error_lang(argv, args), kind=type(exc).__name__)}",
              file=sys.stderr)
        return 70
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
