"""The ``tracer`` command line. Input errors print one line on stderr and exit with code 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from tracer import TracerError, __version__
from tracer.model import Sampling
from tracer.run import DTYPES, encode_prompt, load_model, parse_token_list, run_trace
from tracer.show import format_record, select
from tracer.tracefile import check_writable, load_trace, save_trace


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise TracerError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tracer", description="Trace every tensor of a Qwen3 forward pass.")
    parser.add_argument("--version", action="version", version=f"qwen3-tracer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("trace", help="run a model on a prompt and save every intermediate tensor")
    t.add_argument("model", help="preset name (toy-dense, toy-moe, qwen3-0.6b)")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--prompt", help="text to tokenize")
    src.add_argument("--tokens", help="comma-separated token ids, e.g. 0,1,2,3")
    _model_args(t)
    t.add_argument("--round", type=int, metavar="N", help="hand-calculation mode: round every record to N decimals")
    t.add_argument("--capture", action="append", metavar="GLOB", help="record only matching names (repeatable)")
    t.add_argument("--max-new-tokens", type=int, default=1, metavar="N", help="tokens to generate (default 1)")
    t.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    t.add_argument("--top-k", type=int, metavar="K")
    t.add_argument("--top-p", type=float, metavar="P")
    t.add_argument("--suppress", metavar="IDS", help="comma-separated token ids never to generate")
    t.add_argument("--out", required=True, metavar="FILE.npz")
    t.add_argument("--show", nargs="?", const="*", metavar="GLOB", help="also print the records (matching GLOB)")
    t.add_argument("--lang", choices=("en", "zh"), default="en")

    s = sub.add_parser("show", help="print the records of a trace the way seed 004 does")
    s.add_argument("file", metavar="FILE.npz")
    s.add_argument("pattern", nargs="?", metavar="NAME-GLOB", help="e.g. 'layers.0.attn.*'")
    s.add_argument("--lang", choices=("en", "zh"), default="en", help="language of the explanations")
    s.add_argument("--decimals", type=int, default=3)

    d = sub.add_parser("demo", help="trace the two worked examples of seed 004 and print every step")
    d.add_argument("--out-dir", default="traces", help="where to save the traces (default: traces/)")
    d.add_argument("--lang", choices=("en", "zh"), default="en")
    d.add_argument("--round", type=int, metavar="N", help="hand-calculation mode")
    return parser


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field; VALUE is JSON (e.g. --set mlp_only_layers=[1])")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")


def cmd_trace(args: argparse.Namespace) -> None:
    out = check_writable(args.out)
    model = load_model(args.model, args.set, args.seed, args.dtype)
    if args.tokens is not None:
        ids = parse_token_list(args.tokens)
    elif args.prompt is not None:
        ids = encode_prompt(model, args.prompt)
    else:
        raise TracerError("give the input with --prompt TEXT or --tokens 0,1,2,3")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise TracerError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.top_k is not None and args.top_k < 1:
        raise TracerError(f"--top-k must be at least 1, got {args.top_k}")
    if args.temperature < 0:
        raise TracerError(f"--temperature must not be negative, got {args.temperature}")
    suppress = tuple(parse_token_list(args.suppress)) if args.suppress else model.suppress_tokens
    sampling = Sampling(args.temperature, args.top_k, args.top_p, suppress, args.seed)
    records, meta, gen = run_trace(model, ids, sampling=sampling, max_new_tokens=args.max_new_tokens,
                                   round_decimals=args.round, capture=args.capture, prompt=args.prompt)
    save_trace(out, records, meta)
    trace = load_trace(out)
    if args.show:
        for name in select(trace, args.show):
            print(format_record(trace, name, args.lang), end="\n\n")
    print(_summary(trace))


def _summary(trace) -> str:
    m = trace.meta
    prompt = " ".join(m["token_labels"])
    new = ", ".join(f"{i} ({label})" if label != str(i) else str(i)
                    for i, label in zip(m["generated_ids"], m["generated_labels"]))
    return (f"{m['model']}: {len(m['token_ids'])} tokens [{prompt}] -> next {new}\n"
            f"wrote {len(trace)} records to {trace.path}")


def cmd_show(args: argparse.Namespace) -> None:
    trace = load_trace(args.file)
    names = select(trace, args.pattern)
    if not names:
        raise TracerError(f"no record of {args.file} matches {args.pattern!r}")
    for name in names:
        print(format_record(trace, name, args.lang, args.decimals), end="\n\n")


def cmd_demo(args: argparse.Namespace) -> None:
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, section in (("toy-dense", "§3"), ("toy-moe", "§4")):
        model = load_model(name)
        path = out_dir / f"{name}.npz"
        records, meta, _ = run_trace(model, encode_prompt(model, "明天交報告"), round_decimals=args.round,
                                     prompt="明天交報告")
        save_trace(path, records, meta)
        trace = load_trace(path)
        print(f"═══ {name}: seed 004 {section} — prompt 明天交報告 ═══\n")
        for record in trace.names:
            print(format_record(trace, record, args.lang), end="\n\n")
        print(_summary(trace))
        for note in trace.meta["notes"]:
            print(f"note: {note}")
        print()


COMMANDS = {"trace": cmd_trace, "show": cmd_show, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except TracerError as exc:
        print(f"tracer: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("tracer: error: out of memory; trace fewer layers (--set num_hidden_layers=N) or fewer records "
              "(--capture GLOB)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
