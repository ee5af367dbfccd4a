"""The model card: exact parameter counts per component, from the checkpoint tensor shapes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer.i18n import pad, translator
from tracer.sources.config import Qwen3Config
from tracer.sources.weights import weight_shapes


@dataclass(frozen=True)
class ParamCounts:
    """Parameters per component; ``active`` counts only the k experts a token uses in each sparse layer."""

    embedding: int
    attention: list[int]
    mlp: list[int]
    norms: list[int]
    final_norm: int
    lm_head: int
    total: int
    active: int


def count_params(cfg: Qwen3Config) -> ParamCounts:
    """Count every tensor of the checkpoint, grouped like the model's modules.

    >>> from tracer.sources.presets import QWEN3_0_6B
    >>> count_params(QWEN3_0_6B).total
    596049920
    """
    shapes = weight_shapes(cfg)
    size = {name: int(np.prod(shape)) for name, shape in shapes.items()}
    layers = cfg.num_hidden_layers
    attention, mlp, norms = [0] * layers, [0] * layers, [0] * layers
    inactive = 0
    for name, n in size.items():
        if not name.startswith("model.layers."):
            continue
        i = int(name.split(".")[2])
        if ".self_attn." in name:
            attention[i] += n
        elif ".mlp." in name:
            mlp[i] += n
            if ".experts." in name:
                inactive += n * (cfg.num_experts - cfg.num_experts_per_tok) / cfg.num_experts
        else:
            norms[i] += n
    total = sum(size.values())
    return ParamCounts(
        embedding=size["model.embed_tokens.weight"], attention=attention, mlp=mlp, norms=norms,
        final_norm=size.get("model.norm.weight", 0), lm_head=size.get("lm_head.weight", 0),
        total=total, active=total - round(inactive),
    )


def model_card(cfg: Qwen3Config, name: str, lang: str = "en") -> str:
    """The config and parameter counts as text, labelled in ``lang`` (the config keys stay as config.json has them).

    >>> from tracer.sources.presets import PRESETS
    >>> print(model_card(PRESETS["toy-dense"].config, "toy-dense").splitlines()[-1])
      total                                  116
    """
    tr = translator(lang)
    c = count_params(cfg)
    lines = [tr("sources.card_head", name=name, model_type=cfg.model_type, layers=cfg.num_hidden_layers,
                hidden=cfg.hidden_size, heads=cfg.num_attention_heads, kv_heads=cfg.num_key_value_heads,
                head_dim=cfg.head_dim, vocab=cfg.vocab_size)]
    for key, value in cfg.to_hf_dict().items():
        lines.append(f"  {key:26} {value}")
    lines.append(tr("sources.card_parameters"))
    shape = f"({cfg.vocab_size} × {cfg.hidden_size})"
    lines.append(f"  {pad(tr('sources.card_embedding'), 26)} {c.embedding:>15,}  {shape}")
    distinct = sorted({(a, m, n) for a, m, n in zip(c.attention, c.mlp, c.norms)}, reverse=True)
    for a, m, n in distinct:
        which = [i for i in range(cfg.num_hidden_layers) if (c.attention[i], c.mlp[i], c.norms[i]) == (a, m, n)]
        kind = tr("sources.card_experts" if cfg.is_sparse_layer(which[0]) else "sources.card_mlp")
        parts = tr("sources.card_layer_parts", attention=a, kind=kind, mlp=m, norms=n)
        lines.append(f"  {pad(tr('sources.card_layer', layers=_ranges(which)), 26)} {a + m + n:>15,}  {parts}")
    lines.append(f"  {pad(tr('sources.card_final_norm'), 26)} {c.final_norm:>15,}")
    lm = f"{c.lm_head:>15,}" if c.lm_head else f"{'0':>15}  {tr('sources.card_tied')}"
    lines.append(f"  {pad(tr('sources.card_lm_head'), 26)} {lm}")
    lines.append(f"  {pad(tr('sources.card_total'), 26)} {c.total:>15,}")
    if cfg.is_moe:
        experts = tr("sources.card_active_experts", k=cfg.num_experts_per_tok, n=cfg.num_experts)
        lines.append(f"  {pad(tr('sources.card_active'), 26)} {c.active:>15,}  {experts}")
    return "\n".join(lines)


def _ranges(items: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out = []
    start = prev = items[0]
    for cur in items[1:] + [None]:
        if cur is not None and cur == prev + 1:
            prev = cur
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if cur is not None:
            start = prev = cur
    return ", ".join(out)
