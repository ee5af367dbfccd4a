"""Logit lens, direct logit attribution and interventions on the real transformers model.

Hooks added to a tracing session (``torch_backend.tracing``), nothing of the library edited:
- the logit lens reads each decoder layer's output through the library's own final norm and ``lm_head``
  (their ``forward`` called directly, so the tracing hooks on them do not fire twice);
- direct logit attribution collects what each block writes (``o_proj``'s input, the MLP output, each routed
  expert recomputed from the stacked weights) and computes the records with ``model.attribute``;
- interventions are hooks registered *first* (``prepend=True``), so the model computes with the edited
  tensor and the tracing hooks record it: ``--zero-head`` zeroes a head's columns of ``o_proj``'s input,
  ``--drop-expert`` redoes the router's top-k without the expert, ``--patch`` replaces a module's output.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from tracer import TracerError
from tracer.engine.interventions import Interventions, bare_name
from tracer.engine.model import LENS_TOP, Taps, attribute, keeps, wants_attribution
from tracer.sources.config import Qwen3Config
from tracer.sources.weights import lm_head_name

# Records the torch backend can patch: module outputs (or o_proj's / down_proj's input) the hooks can replace.
PATCHABLE = ("embed.out", "layers.{i}.attn_norm", "layers.{i}.attn.context", "layers.{i}.attn.o_proj",
             "layers.{i}.mlp_norm", "layers.{i}.mlp.gate_proj", "layers.{i}.mlp.up_proj", "layers.{i}.mlp.act",
             "layers.{i}.mlp.down_proj", "layers.{i}.moe.out", "layers.{i}.resid_post", "final_norm", "logits")
_PATCHABLE = re.compile("^(" + "|".join(re.escape(p).replace(r"\{i\}", r"\d+") for p in PATCHABLE) + ")$")


def check_patchable(interventions: Interventions | None) -> None:
    """A one-line error for a patch the torch backend cannot make the model follow."""
    for name, _ in interventions.patches if interventions is not None else ():
        if not _PATCHABLE.match(bare_name(name)):
            raise TracerError.of("interp.torch_patch", name=name, names=", ".join(PATCHABLE))


class Interp:
    """The lens, attribution and intervention hooks of one traced run."""

    def __init__(self, cfg: Qwen3Config, model: Any, session: Any, interventions: Interventions | None):
        self.cfg = cfg
        self.model = model
        self.session = session
        self.torch = session.torch
        self.iv = interventions or Interventions()
        self.patches = dict(self.iv.patches)
        self.handles: list[Any] = []
        self.taps: list[Taps] = []
        self.embedded: np.ndarray | None = None
        self.last_hidden: Any = None
        self.attributing = False

    # -- helpers -------------------------------------------------------------------------------------

    @property
    def rec(self) -> Any:
        return self.session.rec

    def patch_for(self, name: str) -> np.ndarray | None:
        return self.patches.get(self.rec.prefix + name)

    def tensor(self, array: np.ndarray, like: Any) -> Any:
        return self.torch.tensor(np.asarray(array), dtype=like.dtype, device=like.device)

    def replace_output(self, module: Any, fn: Callable[[Any], Any]) -> None:
        """Register first a forward hook whose result (when not None) becomes the module's output."""
        self.handles.append(module.register_forward_hook(lambda _m, _a, out: fn(out), prepend=True))

    def replace_input(self, module: Any, fn: Callable[[Any], Any]) -> None:
        """Register first a pre-hook that may replace the module's first argument."""

        def pre(_m: Any, args: tuple[Any, ...]) -> Any:
            new = fn(args[0])
            return None if new is None else (new, *args[1:])

        self.handles.append(module.register_forward_pre_hook(pre, prepend=True))

    def patch_output(self, module: Any, name: str, shape: Callable[[np.ndarray], np.ndarray] = lambda a: a[None]
                     ) -> None:
        def fn(out: Any) -> Any:
            patch = self.patch_for(name)
            if patch is None:
                return None
            first = out[0] if isinstance(out, tuple) else out
            new = self.tensor(shape(patch), first)
            return (new, *out[1:]) if isinstance(out, tuple) else new

        self.replace_output(module, fn)

    # -- installation --------------------------------------------------------------------------------

    def install(self) -> None:
        m = self.model.model
        self.patch_output(m.embed_tokens, "embed.out")
        self.handles.append(m.embed_tokens.register_forward_hook(self.on_embed))
        for i, layer in enumerate(m.layers):
            self.install_layer(i, layer)
        self.patch_output(m.norm, "final_norm")
        self.patch_output(self.model.lm_head, "logits")
        self.handles.append(self.model.lm_head.register_forward_hook(self.on_logits))

    def install_layer(self, i: int, layer: Any) -> None:
        n, att, cfg = f"layers.{i}", layer.self_attn, self.cfg
        self.patch_output(layer.input_layernorm, f"{n}.attn_norm")
        heads = self.iv.heads_zeroed(i)

        def edit_context(merged: Any) -> Any:
            patch = self.patch_for(f"{n}.attn.context")
            if patch is not None:
                return self.tensor(patch.transpose(1, 0, 2).reshape(1, patch.shape[1], -1), merged)
            if not heads:
                return None
            out = merged.clone().view(*merged.shape[:2], cfg.num_attention_heads, cfg.head_dim)
            out[:, :, heads] = 0
            return out.view(merged.shape)

        self.replace_input(att.o_proj, edit_context)
        self.handles.append(att.o_proj.register_forward_pre_hook(lambda _m, args: self.on_context(i, args[0])))
        self.patch_output(att.o_proj, f"{n}.attn.o_proj")
        self.patch_output(layer.post_attention_layernorm, f"{n}.mlp_norm")
        mlp = layer.mlp
        if cfg.is_sparse_layer(i):
            dropped = self.iv.experts_dropped(i)
            if dropped:
                self.replace_output(mlp.gate, lambda out: self.drop(out, dropped))
            self.handles.append(mlp.experts.register_forward_hook(lambda mod, args, out: self.on_experts(i, mod, args)))
            self.patch_output(mlp, f"{n}.moe.out")
        else:
            for proj in ("gate_proj", "up_proj", "down_proj"):
                self.patch_output(getattr(mlp, proj), f"{n}.mlp.{proj}")

            def edit_act(x: Any) -> Any:
                patch = self.patch_for(f"{n}.mlp.act")
                return None if patch is None else self.tensor(patch[None], x)

            self.replace_input(mlp.down_proj, edit_act)
        self.handles.append(mlp.register_forward_hook(lambda _m, _a, out: self.on_mlp(i, out)))
        self.patch_output(layer, f"{n}.resid_post")
        self.handles.append(layer.register_forward_hook(lambda _m, _a, out: self.on_block(i, out)))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    # -- interventions -------------------------------------------------------------------------------

    def drop(self, out: Any, dropped: list[int]) -> Any:
        """The router's output redone with the dropped experts' probabilities at −∞ before top-k."""
        torch = self.torch
        logits, _, _ = out
        probs = torch.nn.functional.softmax(logits, dtype=torch.float, dim=-1)
        probs[:, dropped] = -torch.inf
        value, ids = torch.topk(probs, self.cfg.num_experts_per_tok, dim=-1)
        if self.cfg.norm_topk_prob:
            value = value / value.sum(dim=-1, keepdim=True)
        return logits, value.to(logits.dtype), ids

    # -- collection ----------------------------------------------------------------------------------

    def on_embed(self, _m: Any, _a: Any, out: Any) -> None:
        self.attributing = wants_attribution(self.cfg, self.rec, self.iv)
        self.taps = []
        self.embedded = self.session.np(out[0]) if self.attributing else None

    def on_context(self, i: int, merged: Any) -> None:
        if self.attributing:
            cfg = self.cfg
            context = self.session.np(merged[0]).reshape(-1, cfg.num_attention_heads, cfg.head_dim)
            self.taps.append(Taps(context=context.transpose(1, 0, 2).copy()))

    def on_experts(self, i: int, module: Any, args: tuple[Any, ...]) -> None:
        """Each routed expert's gate-weighted output, recomputed from the library's stacked weights."""
        if not self.attributing:
            return
        torch = self.torch
        hidden, ids, weights = args
        if any(p.is_meta for p in module.parameters()):  # offloaded to disk: load for the recompute
            from accelerate.utils import align_module_device

            with align_module_device(module, hidden.device):
                return self.on_experts(i, module, args)
        for e in range(self.cfg.num_experts):
            rows = torch.nonzero((ids == e).any(dim=1)).flatten()
            if rows.numel() == 0:
                continue
            slot = (ids[rows] == e).float().argmax(dim=1)
            gate, up = torch.nn.functional.linear(hidden[rows], module.gate_up_proj[e]).chunk(2, dim=-1)
            down = torch.nn.functional.linear(module.act_fn(gate) * up, module.down_proj[e])
            written = down * weights[rows, slot, None]
            self.taps[i].experts.append((e, rows.cpu().numpy(), self.session.np(written)))

    def on_mlp(self, i: int, out: Any) -> None:
        if self.attributing:
            self.taps[i].mlp = self.session.np(out[0])

    def on_block(self, i: int, out: Any) -> None:
        hidden = out[0] if isinstance(out, tuple) else out
        if i == self.cfg.num_hidden_layers - 1:
            self.last_hidden = hidden  # read after the logits, in the NumPy engine's order
        else:
            self.lens(i, hidden)

    def on_logits(self, _m: Any, _a: Any, out: Any) -> None:
        cfg, s = self.cfg, self.session
        self.lens(cfg.num_hidden_layers - 1, self.last_hidden)
        if self.attributing:
            assert self.embedded is not None
            last = s.np(self.last_hidden[0])
            # the collected copies equal the records of the same names; register them as those inputs
            named = {s.full("embed.out"): self.embedded, s.full(f"layers.{cfg.num_hidden_layers - 1}.resid_post"): last,
                     s.full("logits"): s.np(out[0])}
            for i, tap in enumerate(self.taps):
                named[s.full(f"layers.{i}.attn.context")] = tap.context
                written = f"layers.{i}.moe.out" if cfg.is_sparse_layer(i) else f"layers.{i}.mlp.down_proj"
                named[s.full(written)] = tap.mlp
            inputs = self.rec.params(named)
            for name in named:
                inputs(name)
            library = _LibraryWeights(self.model, s)
            attribute(cfg, self.rec.params(library), self.rec, self.embedded, last,
                      named[s.full("logits")], self.taps, derived=True)

    def lens(self, i: int, hidden: Any) -> None:
        """The library's final norm and lm_head on a layer's output: top-20 tokens and their probabilities."""
        rec, s, torch = self.rec, self.session, self.torch
        n = f"lens.{i}"
        full = rec.asks(f"{n}.logits")
        if not (full or keeps(rec, f"{n}.top_ids", f"{n}.top_probs")):
            return
        logits = self.model.lm_head.forward(self.model.model.norm.forward(hidden))[0]
        sources = (s.full(f"layers.{i}.resid_post"), "model.norm.weight", lm_head_name(self.cfg))
        if full:
            rec(f"{n}.logits", s.np(logits), *sources, derived=True)
            sources = (s.full(f"{n}.logits"),)
        probs = torch.nn.functional.softmax(logits.float(), dim=-1)
        ids = torch.sort(logits, dim=-1, descending=True, stable=True).indices[:, :LENS_TOP]  # ties: lower id first
        value = probs.gather(-1, ids)
        rec(f"{n}.top_ids", ids.cpu().numpy().astype(np.int64), *sources, derived=True)
        rec(f"{n}.top_probs", s.np(value.to(logits.dtype)), *sources, derived=True)


class _LibraryWeights(Mapping[str, np.ndarray]):
    """The library's own parameters as NumPy arrays, by checkpoint name (what ``attribute`` reads); a parameter
    offloaded to disk (``--device auto``) is loaded for the copy."""

    def __init__(self, model: Any, session: Any):
        self.model, self.session = model, session
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            param = self.model.get_parameter(name)
            if param.is_meta:
                from accelerate.utils import align_module_device

                owner, _, leaf = name.rpartition(".")
                module = self.model.get_submodule(owner)
                with align_module_device(module, "cpu"):
                    self._cache[name] = self.session.np(module.get_parameter(leaf)).copy()
            else:
                self._cache[name] = self.session.np(param)
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self.model.named_parameters())

    def __len__(self) -> int:
        return sum(1 for _ in self.model.named_parameters())


@contextmanager
def interp(cfg: Qwen3Config, model: Any, session: Any, interventions: Interventions | None) -> Iterator[Interp]:
    """The lens, attribution and intervention hooks, installed for one traced run."""
    hooks = Interp(cfg, model, session, interventions)
    hooks.install()
    try:
        yield hooks
    finally:
        hooks.remove()
