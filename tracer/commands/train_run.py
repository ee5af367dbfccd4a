"""From a model and a text (or a preference pair / group) to a training-step trace: what ``tracer train-step``,
the explorer and the notebooks call.

SFT masking follows TRL's ``assistant_only_loss`` with its Qwen3 training template (the facts note, §3): each
assistant turn is rendered ``<|im_start|>assistant\\n`` + ``<think>\\n{reasoning}\\n</think>\\n\\n`` (an empty think
block when there is none, in EVERY assistant turn) + content + ``<|im_end|>\\n``; the header is not trained, the
think block, the content, ``<|im_end|>`` and the newline after it are. System and user turns are not trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracer import Message, TracerError
from tracer.commands.run import Model, check_tokens, token_labels
from tracer.engine import backward_ops as bw
from tracer.traces.tracefile import Trace, record_meta
from tracer.engine.train import (DEFAULT_UPDATE_PARAMS, NOT_ASSISTANT, ROUTER_AUX_LOSS_COEF, Backward, Optimizer,
                          Targets, answer_logprobs, backward, dpo_loss, grpo_advantages, lm_loss, param_grads,
                          run_forward, select_params)
from tracer.engine.recorder import Recorder


@dataclass
class Segment:
    """A piece of rendered chat text and whether SFT trains on its tokens."""

    text: str
    trained: bool


def sft_segments(messages: Any) -> list[Segment]:
    """A conversation as TRL's Qwen3 training template renders it, cut where the trained spans begin and end.

    >>> [(s.text, s.trained) for s in sft_segments([{"role": "user", "content": "1+1?"},
    ...                                              {"role": "assistant", "content": "2"}])]
    [('<|im_start|>user\\n1+1?<|im_end|>\\n<|im_start|>assistant\\n', False), ('<think>\\n\\n</think>\\n\\n2<|im_end|>\\n', True)]
    """
    if not isinstance(messages, list) or not messages:
        raise TracerError.of("train.err_messages")
    out: list[Segment] = []
    pending = ""
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise TracerError.of("train.err_sft_role", i=i)
        content = m.get("content")
        if not isinstance(content, str) or m.get("tool_calls"):
            raise TracerError.of("train.err_sft_content", i=i)
        role = m["role"]
        if role != "assistant":
            pending += f"<|im_start|>{role}\n{content}<|im_end|>\n"
            continue
        reasoning = m.get("reasoning_content")
        if not isinstance(reasoning, str):
            reasoning = ""
            if "</think>" in content:
                reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
                content = content.split("</think>")[-1].lstrip("\n")
        out.append(Segment(pending + "<|im_start|>assistant\n", False))
        pending = ""
        out.append(Segment("<think>\n" + reasoning.strip("\n") + "\n</think>\n\n" + content.lstrip("\n")
                           + "<|im_end|>\n", True))
    if not any(s.trained for s in out):
        raise TracerError.of("train.err_sft_no_assistant")
    if pending:
        out.append(Segment(pending, False))
    return out


def sft_tokens(model: Model, segments: list[Segment]) -> tuple[list[int], np.ndarray]:
    """Token ids of the whole conversation and which of them are trained.

    Each segment is tokenised on its own (its borders are special tokens, where BPE never merges); the result
    is checked against tokenising the whole text at once."""
    ids: list[int] = []
    trained: list[bool] = []
    for seg in segments:
        piece = model.tokenizer.encode(seg.text)
        ids += piece
        trained += [seg.trained] * len(piece)
    if ids != model.tokenizer.encode("".join(s.text for s in segments)):
        raise TracerError.of("train.err_sft_borders")
    return ids, np.array(trained, dtype=bool)


STEP_RECORDS = ("grad.", "update.", "train.", "dpo.", "grpo.")
"""Records a training step computes (a forward pass may hold a mask's −∞; these never may)."""


def check_finite(records: Mapping[str, np.ndarray], losses: list[float]) -> None:
    """Refuse a step whose records or losses overflowed: a NaN anywhere, ±inf in a step record or loss."""
    for name, value in records.items():
        if not np.issubdtype(value.dtype, np.floating):
            continue
        if np.isnan(value).any() or (name.startswith(STEP_RECORDS) and not np.isfinite(value).all()):
            raise TracerError.of("train.err_nonfinite", name=name)
    for s, loss in enumerate(losses):
        if not math.isfinite(loss):
            raise TracerError.of("train.err_nonfinite", name=Message("errors.loss_at_step", step=s))


def _trace(model: Model, rec: Recorder, ids: list[int], meta: dict[str, Any]) -> Trace:
    check_finite(rec.records, list(meta.get("losses", [])))
    full = {
        "model": model.name, "source": model.source, "seed": model.seed, "backend": meta.pop("backend", "numpy"),
        "dtype": str(model.weights[next(iter(model.weights))].dtype), "config": model.cfg.as_dict(),
        "model_type": model.cfg.model_type, "token_ids": list(ids), "token_labels": token_labels(model, list(ids)),
        "generated_ids": [], "generated_labels": [], "stop_reason": None,
        "vocab": list(model.toy_vocab) if model.toy_vocab else None, "notes": list(model.notes),
        **meta, "records": record_meta(rec),
    }
    return Trace.in_memory(rec.records, full)


def _record_grads(rec: Recorder, forward_names: list[str], grads: Mapping[str, np.ndarray],
                  params: Mapping[str, np.ndarray]) -> None:
    for name in reversed(forward_names):  # in the order the backward pass computes them
        if name in grads:
            rec(f"grad.{name}", np.asarray(grads[name]), name, op="backward")
    for name, g in params.items():
        rec(f"grad.param.{name}", g, name)


def _optimize(model: Model, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], optimizer: Optimizer,
              steps: int, loss_of: Any, update_params: str, rec: Recorder) -> list[float]:
    """Run ``steps`` optimizer steps on the same batch; record ΔW of the chosen tensors and the loss after."""
    chosen = select_params(list(params), update_params)
    before = {n: params[n].copy() for n in chosen}
    losses = []
    for s in range(steps):
        optimizer.step(params, grads)
        for n, w in params.items():
            if not np.isfinite(w).all():
                raise TracerError.of("train.err_nonfinite", name=Message("errors.after_step", name=n, step=s + 1))
        value, new_grads = loss_of(params, s < steps - 1)
        losses.append(value)
        grads = new_grads
    dtype = params[chosen[0]].dtype
    rec("train.loss_after", np.array(losses[-1], dtype=dtype), "train.loss", op="mean_loss")
    for n in chosen:
        rec(f"update.param.{n}", params[n] - before[n], f"grad.param.{n}")
    return losses


def _check_aux(aux_coef: float) -> None:
    if not math.isfinite(aux_coef) or aux_coef < 0:
        raise TracerError.of("train.err_aux_coef", coef=aux_coef)


def _check_steps(optimizer: Optimizer | None, steps: int) -> None:
    if steps < 1:
        raise TracerError.of("train.err_steps", steps=steps)
    if steps > 1 and optimizer is None:
        raise TracerError.of("train.err_steps_optimizer")


def train_step(model: Model, ids: list[int], counted: np.ndarray | None = None, *, optimizer: Optimizer | None = None,
               steps: int = 1, update_params: str = DEFAULT_UPDATE_PARAMS, aux_coef: float = ROUTER_AUX_LOSS_COEF,
               prompt: str | None = None, sft: bool = False) -> Trace:
    """Forward, loss, backward (and optimizer steps) on one sequence.

    ``counted[t]``: whether token t is a target (None: every token after the first, i.e. pretraining).
    """
    _check_steps(optimizer, steps)
    _check_aux(aux_coef)
    check_tokens(model.cfg, ids, 1)
    cfg = model.cfg
    tokens = np.array(ids, dtype=np.int64)
    if counted is None:
        targets = Targets.next_token(tokens, np.ones(len(ids), dtype=bool))
    else:
        targets = Targets.next_token(tokens, counted, NOT_ASSISTANT)
    params = {n: np.array(model.weights[n]) for n in model.weights}
    rec = run_forward(cfg, params, tokens)
    forward_names = list(rec.records)
    loss, dlogits, d_probs = lm_loss(cfg, rec.records, targets, aux_coef)
    b = backward(cfg, params, rec.records, dlogits, d_probs)
    grads = param_grads(params, b.params)
    rec("train.labels", loss.records["train.labels"], "tokens")
    rec("train.token_loss", loss.records["train.token_loss"], "logits", "train.labels")
    aux_inputs = [f"layers.{i}.moe.router_probs" for i in range(cfg.num_hidden_layers) if cfg.is_sparse_layer(i)]
    for name in ("train.aux_f", "train.aux_p", "train.aux_loss"):
        if name in loss.records:
            rec(name, loss.records[name], *(aux_inputs if name != "train.aux_loss" else ["train.aux_f", "train.aux_p"]))
    rec("train.loss", loss.records["train.loss"], "train.token_loss", *(["train.aux_loss"] if aux_inputs else []))
    _record_grads(rec, forward_names, b.grads, grads)
    meta: dict[str, Any] = {"prompt": prompt, "objective": "sft" if sft else "next_token",
                            "label_reasons": targets.reasons, "counted_tokens": int(np.sum(targets.labels != -100)),
                            "losses": [loss.value], **loss.meta}
    if optimizer is not None:
        def loss_of(p: dict[str, np.ndarray], want_grads: bool) -> tuple[float, dict[str, np.ndarray]]:
            r = run_forward(cfg, p, tokens)
            value, dl, dp = lm_loss(cfg, r.records, targets, aux_coef)
            return value.value, (param_grads(p, backward(cfg, p, r.records, dl, dp).params) if want_grads else {})

        meta["losses"] += _optimize(model, params, grads, optimizer, steps, loss_of, update_params, rec)
        meta["optimizer"] = _optimizer_meta(optimizer, steps, update_params)
    return _trace(model, rec, ids, meta)


def train_step_torch(model: Model, ids: list[int], counted: np.ndarray | None = None, *,
                     aux_coef: float = ROUTER_AUX_LOSS_COEF, prompt: str | None = None, sft: bool = False,
                     device: str | None = None, dtype: str = "float32") -> Trace:
    """The same step through the real transformers model, every gradient from torch autograd (float32 or
    float64)."""
    from tracer.backends import torch_backend as tb
    from tracer.backends import torch_train as tt

    reason = tb.unsupported(model.cfg)
    if reason:
        raise TracerError.of("train.err_torch_unsupported", model=model.name, reason=reason)
    _check_aux(aux_coef)
    check_tokens(model.cfg, ids, 1)
    tokens = np.array(ids, dtype=np.int64)
    targets = Targets.next_token(tokens, np.ones(len(ids), dtype=bool) if counted is None else counted)
    if not np.any(targets.labels != bw.IGNORE_INDEX):
        raise TracerError.of("train.err_all_masked")
    device = tb.check_device(device)
    hf = tt.build(model.cfg, model.weights, model.directory, dtype, device)
    rec, losses = tt.train_step_torch(model.cfg, hf, ids, targets.labels, aux_coef)
    meta: dict[str, Any] = {"prompt": prompt, "objective": "sft" if sft else "next_token", "backend": "torch",
                            "device": device, "backend_versions": tb.library_versions(),
                            "label_reasons": targets.reasons, "counted_tokens": int(np.sum(targets.labels != -100)),
                            "losses": [losses["loss"]], **losses}
    if model.cfg.is_moe:
        meta["router_aux_loss_coef"] = aux_coef
    trace = _trace(model, rec, ids, meta)
    trace.meta["dtype"] = dtype
    return trace


def _optimizer_meta(opt: Optimizer, steps: int, update_params: str) -> dict[str, Any]:
    return {"kind": opt.kind, "lr": opt.lr, "weight_decay": opt.weight_decay, "betas": list(opt.betas),
            "eps": opt.eps, "steps": steps, "update_params": update_params}


# ---------------------------------------------------------------------------------------------------
# Preference pairs and groups
# ---------------------------------------------------------------------------------------------------


def _text_field(data: Any, key: str, where: str) -> str:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise TracerError.of("train.err_text_field", where=where, key=repr(key))
    return value


def prompt_answer_ids(model: Model, prompt: str, answer: str, where: str) -> tuple[list[int], int]:
    """ids of prompt + answer (tokenised together) and where the answer starts."""
    p_ids = model.tokenizer.encode(prompt)
    ids = model.tokenizer.encode(prompt + answer)
    if ids[:len(p_ids)] != p_ids or len(ids) <= len(p_ids):
        raise TracerError.of("train.err_answer_merges", where=where)
    check_tokens(model.cfg, ids, 1)
    return ids, len(p_ids)


def _logprob_grads(cfg: Any, p: dict[str, np.ndarray], outs: list[tuple[Recorder, np.ndarray, np.ndarray]],
                   scales: list[float]) -> tuple[dict[str, np.ndarray], Backward]:
    """Parameter gradients of L = Σ_s scale_s · Σ_t log π(answer token t of sequence s) (the sequences are separate
    forward passes, so their parameter gradients add), and the backward pass of the first sequence."""
    grads: dict[str, np.ndarray] = {}
    backs = []
    for (r, labels, _), d in zip(outs, scales):
        logits = r.records["logits"]
        dlogits = bw.token_logprob_backward(logits, labels, np.full(len(labels), d)).astype(logits.dtype)
        b = backward(cfg, p, r.records, dlogits)
        backs.append(b)
        for n, g in b.params.items():
            grads[n] = grads[n] + g if n in grads else g
    return param_grads(p, grads), backs[0]


def read_pair(model: Model, data: Any) -> tuple[tuple[list[int], int], tuple[list[int], int]]:
    """A DPO pair file: {"prompt": ..., "chosen": ..., "rejected": ...} (plain text, tokenised as given)."""
    prompt = _text_field(data, "prompt", "the --dpo pair file")
    return tuple(prompt_answer_ids(model, prompt, _text_field(data, k, "the --dpo pair file"), f"--dpo {k}")
                 for k in ("chosen", "rejected"))  # type: ignore[return-value]


def dpo_step(model: Model, pair: Any, *, beta: float = 0.1, optimizer: Optimizer | None = None, steps: int = 1,
             update_params: str = DEFAULT_UPDATE_PARAMS) -> Trace:
    """DPO on one pair: summed answer log-probs under the policy and the frozen reference (the starting weights),
    implicit rewards, the sigmoid loss and its parameter gradients."""
    if not math.isfinite(beta) or beta <= 0:
        raise TracerError.of("train.err_beta", beta=beta)
    _check_steps(optimizer, steps)
    cfg = model.cfg
    seqs = read_pair(model, pair)
    ref = {n: np.array(model.weights[n]) for n in model.weights}
    ref_logp = [float(np.sum(answer_logprobs(cfg, ref, np.array(ids), start)[2], dtype=np.float64))
                for ids, start in seqs]
    params = {n: v.copy() for n, v in ref.items()}

    def evaluate(p: dict[str, np.ndarray], want_grads: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        outs = [answer_logprobs(cfg, p, np.array(ids), start) for ids, start in seqs]
        logp = [float(np.sum(o[2], dtype=np.float64)) for o in outs]
        loss, d_chosen, rc, rr = dpo_loss(beta, (logp[0], logp[1]), (ref_logp[0], ref_logp[1]))
        grads, back = _logprob_grads(cfg, p, outs, [d_chosen, -d_chosen]) if want_grads else ({}, None)
        return {"outs": outs, "logp": logp, "loss": loss, "rewards": (rc, rr), "back": back}, grads

    first, grads = evaluate(params, True)
    rec = first["outs"][0][0]  # the forward of prompt + chosen answer: its records and their gradients are kept
    forward_names = list(rec.records)
    dtype = next(iter(params.values())).dtype
    for k, (name, (_, _, token_logp)) in enumerate(zip(("chosen", "rejected"), first["outs"])):
        rec(f"dpo.{name}.token_logp", token_logp)
        rec(f"dpo.{name}.logp", np.array(first["logp"][k], dtype=dtype), f"dpo.{name}.token_logp")
        rec(f"dpo.{name}.ref_logp", np.array(ref_logp[k], dtype=dtype))
        rec(f"dpo.{name}.reward", np.array(first["rewards"][k], dtype=dtype), f"dpo.{name}.logp", f"dpo.{name}.ref_logp")
    rec("train.loss", np.array(first["loss"], dtype=dtype), "dpo.chosen.reward", "dpo.rejected.reward", op="dpo_loss")
    _record_grads(rec, forward_names, first["back"].grads, grads)
    meta: dict[str, Any] = {"objective": "dpo", "beta": beta, "losses": [first["loss"]], "prompt": pair["prompt"],
                            "dpo": {name: {"token_ids": ids, "answer_start": start,
                                           "token_labels": token_labels(model, ids)}
                                    for name, (ids, start) in zip(("chosen", "rejected"), seqs)}}
    return _preference_trace(model, rec, meta, params, grads, evaluate, seqs[0][0], optimizer, steps, update_params)


def _preference_trace(model: Model, rec: Recorder, meta: dict[str, Any], params: dict[str, np.ndarray],
                      grads: dict[str, np.ndarray], evaluate: Callable[..., Any], ids: list[int],
                      optimizer: Optimizer | None, steps: int, update_params: str) -> Trace:
    """The trace of a DPO or GRPO step, after the optional optimizer steps on the same objective."""
    if optimizer is not None:
        def loss_of(p: dict[str, np.ndarray], want: bool) -> tuple[float, dict[str, np.ndarray]]:
            out, g = evaluate(p, want)
            return out["loss"], g

        meta["losses"] += _optimize(model, params, grads, optimizer, steps, loss_of, update_params, rec)
        meta["optimizer"] = _optimizer_meta(optimizer, steps, update_params)
    return _trace(model, rec, ids, meta)


def read_group(model: Model, data: Any) -> tuple[list[tuple[list[int], int]], np.ndarray]:
    """A GRPO group file: {"prompt": ..., "completions": [{"text": ..., "reward": number}, ...]} (≥ 2)."""
    prompt = _text_field(data, "prompt", "the --grpo group file")
    items = data.get("completions")
    if not isinstance(items, list) or len(items) < 2:
        raise TracerError.of("train.err_grpo_completions")
    seqs, rewards = [], []
    for j, item in enumerate(items):
        text = _text_field(item, "text", f"--grpo completion {j}")
        reward = item.get("reward")
        if (isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward)
                or abs(reward) > float(np.finfo(np.float32).max)):
            raise TracerError.of("train.err_grpo_reward", j=j, reward=repr(reward))
        seqs.append(prompt_answer_ids(model, prompt, text, f"--grpo completion {j}"))
        rewards.append(float(reward))
    return seqs, np.array(rewards)


def grpo_step(model: Model, group: Any, *, optimizer: Optimizer | None = None, steps: int = 1,
              update_params: str = DEFAULT_UPDATE_PARAMS) -> Trace:
    """GRPO on one group (TRL defaults: β = 0, ``loss_type="dapo"``, first iteration so ρ = 1):
    L = Σ_i Σ_t −ρ_{i,t}·A_i / (all completion tokens); dL/dlog π_{i,t} = −A_i / N."""
    _check_steps(optimizer, steps)
    cfg = model.cfg
    seqs, rewards = read_group(model, group)
    adv = grpo_advantages(rewards)
    total = sum(len(ids) - start for ids, start in seqs)
    params = {n: np.array(model.weights[n]) for n in model.weights}

    def evaluate(p: dict[str, np.ndarray], want_grads: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        outs = [answer_logprobs(cfg, p, np.array(ids), start) for ids, start in seqs]
        token_loss = [np.where(o[1] != bw.IGNORE_INDEX, -a, 0.0) for o, a in zip(outs, adv)]
        loss = float(sum(np.sum(t) for t in token_loss) / total)
        grads, back = _logprob_grads(cfg, p, outs, [-a / total for a in adv]) if want_grads else ({}, None)
        return {"outs": outs, "token_loss": token_loss, "loss": loss, "back": back}, grads

    first, grads = evaluate(params, True)
    rec = first["outs"][0][0]  # the forward of prompt + completion 0: its records and their gradients are kept
    forward_names = list(rec.records)
    dtype = next(iter(params.values())).dtype
    rec("grpo.rewards", rewards.astype(dtype))
    rec("grpo.advantages", adv.astype(dtype), "grpo.rewards")
    for j, ((_, _, token_logp), tl) in enumerate(zip(first["outs"], first["token_loss"])):
        rec(f"grpo.{j}.token_logp", token_logp)
        rec(f"grpo.{j}.token_loss", tl.astype(dtype), f"grpo.{j}.token_logp", "grpo.advantages")
    rec("train.loss", np.array(first["loss"], dtype=dtype), *[f"grpo.{j}.token_loss" for j in range(len(seqs))],
        op="grpo_loss")
    _record_grads(rec, forward_names, first["back"].grads, grads)
    meta: dict[str, Any] = {"objective": "grpo", "losses": [first["loss"]], "prompt": group["prompt"],
                            "grpo": [{"token_ids": ids, "answer_start": start, "token_labels": token_labels(model, ids)}
                                     for ids, start in seqs]}
    return _preference_trace(model, rec, meta, params, grads, evaluate, seqs[0][0], optimizer, steps, update_params)
