"""``tracer train-step``: one traced training step (loss, every gradient, optional optimizer steps, DPO, GRPO)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np

from tracer import TracerError
from tracer.commands.run import DTYPES, encode_prompt, load_model, parse_token_list, render_messages
from tracer.engine.train import DEFAULT_UPDATE_PARAMS, ROUTER_AUX_LOSS_COEF, Optimizer
from tracer.i18n import t
from tracer.text.chat import load_json_file
from tracer.traces.tracefile import Trace, check_writable, save_trace


def add_parser(sub: argparse._SubParsersAction, h: Callable[..., str]) -> None:
    """The ``train-step`` subcommand and its options, with the help texts ``h(key)`` (``tracer.cli.help_texts``);
    ``--lang`` is added to every subcommand by ``tracer.cli.build_parser``."""
    p = sub.add_parser("train-step", help=h("cmd_train_step"))
    p.add_argument("model", help=h("help_model_train"))
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompt", help=h("help_prompt_train"))
    src.add_argument("--tokens", help=h("help_tokens"))
    src.add_argument("--messages", metavar="FILE.json", help=h("help_messages_train"))
    src.add_argument("--dpo", metavar="PAIR.json", help=h("help_dpo"))
    src.add_argument("--grpo", metavar="GROUP.json", help=h("help_grpo"))
    p.add_argument("--sft", action="store_true", help=h("help_sft"))
    p.add_argument("--beta", type=float, default=0.1, help=h("help_beta"))
    p.add_argument("--aux-coef", type=float, default=ROUTER_AUX_LOSS_COEF,
                   help=h("help_aux_coef", coef=ROUTER_AUX_LOSS_COEF))
    p.add_argument("--optimizer", choices=("sgd", "adamw"), help=h("help_optimizer"))
    p.add_argument("--lr", type=float, help=h("help_lr"))
    p.add_argument("--weight-decay", type=float, help=h("help_weight_decay"))
    p.add_argument("--steps", type=int, default=1, help=h("help_steps"))
    p.add_argument("--update-params", default=DEFAULT_UPDATE_PARAMS, metavar="GLOB",
                   help=h("help_update_params", default=DEFAULT_UPDATE_PARAMS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=h("help_set_short"))
    p.add_argument("--seed", type=int, default=0, help=h("help_seed_weights"))
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32", help=h("help_dtype_train"))
    p.add_argument("--backend", choices=("numpy", "torch"), default="numpy", help=h("help_backend_train"))
    p.add_argument("--device", help=h("help_device_train"))
    p.add_argument("--out", required=True, metavar="FILE.npz", help=h("help_out_trace"))


def _optimizer(args: argparse.Namespace) -> Optimizer | None:
    if args.optimizer is None:
        if args.lr is not None or args.weight_decay is not None:
            raise TracerError.of("train.err_lr_without_optimizer")
        return None
    if args.lr is None:
        raise TracerError.of("train.err_optimizer_lr", kind=args.optimizer)
    wd = args.weight_decay if args.weight_decay is not None else (0.01 if args.optimizer == "adamw" else 0.0)
    return Optimizer(args.optimizer, args.lr, wd)


def train_step_command(args: argparse.Namespace) -> str:
    """``tracer train-step``: run and save the step, and return its summary for the command line to print.
    Floating-point overflow is not printed as NumPy warnings: a step whose numbers stop being finite is refused
    in one line naming the first such record (``train_run``)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _train_step(args)


def _train_step(args: argparse.Namespace) -> str:
    from tracer.commands import train_run as tr

    out = check_writable(args.out)
    optimizer = _optimizer(args)
    model = load_model(args.model, args.set, args.seed, args.dtype)
    if model.vision is not None:
        raise TracerError.of("vision.err_no_train", model=args.model)
    if args.sft and args.messages is None:
        raise TracerError.of("train.err_sft_messages")
    if args.backend == "torch" and (optimizer is not None or args.dpo or args.grpo or args.steps != 1):
        raise TracerError.of("train.err_torch_only_step")
    if args.device and args.backend != "torch":
        raise TracerError.of("train.err_device")
    if args.dpo:
        trace = tr.dpo_step(model, load_json_file(args.dpo, "--dpo pair"), beta=args.beta, optimizer=optimizer,
                            steps=args.steps, update_params=args.update_params)
    elif args.grpo:
        trace = tr.grpo_step(model, load_json_file(args.grpo, "--grpo group"), optimizer=optimizer, steps=args.steps,
                             update_params=args.update_params)
    else:
        counted, prompt = None, args.prompt
        if args.messages is not None:
            if model.toy_vocab:
                raise TracerError.of("train.err_messages_toy", model=args.model, vocab=" ".join(model.toy_vocab))
            messages = load_json_file(args.messages, "messages")
            if args.sft:
                segments = tr.sft_segments(messages)
                ids, counted = tr.sft_tokens(model, segments)
                prompt = "".join(s.text for s in segments)
            else:
                prompt = render_messages(model, messages, None, False, True)
                ids = encode_prompt(model, prompt)
        elif args.tokens is not None:
            ids = parse_token_list(args.tokens, model)
        elif prompt is not None:
            ids = encode_prompt(model, prompt)
        else:
            raise TracerError.of("train.err_no_input")
        if args.backend == "torch":
            trace = tr.train_step_torch(model, ids, counted, aux_coef=args.aux_coef, prompt=prompt, sft=args.sft,
                                        device=args.device, dtype=args.dtype)
        else:
            trace = tr.train_step(model, ids, counted, optimizer=optimizer, steps=args.steps,
                                  update_params=args.update_params, aux_coef=args.aux_coef, prompt=prompt,
                                  sft=args.sft)
    trace.path = save_trace(out, trace)
    return summary(trace, args.lang)


def trained_spans(trace: Trace) -> list[str]:
    """The text of each run of counted target tokens (what --sft trains on)."""
    labels, reasons = trace.meta["token_labels"], trace.meta["label_reasons"]
    spans: list[str] = []
    previous = False
    for pos, reason in enumerate(reasons):
        counted = reason == "counted"
        if counted:
            if not previous:
                spans.append("")
            spans[-1] += labels[pos + 1]
        previous = counted
    return spans


def summary(trace: Trace, lang: str) -> str:
    """What the step computed, in the user's language."""
    m = trace.meta
    lines = [t("train.summary_loss", lang, model=m["model"], objective=m["objective"], loss=m["losses"][0])]
    if "counted_tokens" in m:
        lines.append(t("train.summary_tokens", lang, counted=m["counted_tokens"], total=len(m["token_ids"])))
    if m["objective"] == "sft":
        lines.append(t("train.summary_sft", lang, spans=" · ".join(json.dumps(x, ensure_ascii=False)
                                                                    for x in trained_spans(trace))))
    if "aux_loss" in m:
        lines.append(t("train.summary_aux", lang, aux=m["aux_loss"], coef=m["router_aux_loss_coef"]))
    if "transformers_loss" in m:
        lines.append(t("train.summary_transformers", lang, loss=m["transformers_loss"]))
    if m["objective"] == "dpo":
        lines.append(t("train.summary_dpo", lang, rc=float(trace["dpo.chosen.reward"]),
                       rr=float(trace["dpo.rejected.reward"]), beta=m["beta"]))
    if "optimizer" in m:
        o = m["optimizer"]
        lines.append(t("train.summary_steps", lang, kind=o["kind"], lr=o["lr"], steps=o["steps"],
                       losses=json.dumps([round(x, 6) for x in m["losses"]])))
    grads = sum(1 for n in trace.names if n.startswith("grad."))
    lines.append(t("train.summary_wrote", lang, records=len(trace), grads=grads, path=trace.path))
    return "\n".join(lines)
