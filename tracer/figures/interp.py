"""Figures that ask *why*: logit lens grid, residual stream, direct logit attribution, all heads, BertViz-style
head view, and the comparison of two prompts. Shared by the explorer and notebook 08.

They read records only. The per-layer norms and cosines of the residual stream are derived here from the recorded
``resid_mid`` / ``resid_post`` and what attention and the MLP / MoE wrote (``attn.o_proj``, ``mlp.down_proj`` /
``moe.out``), so a trace needs no extra records for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tracer.i18n import t
from tracer.traces.tracefile import Trace

GROUP_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf")


def _go() -> Any:
    from tracer.figures.forward import _go as go

    return go()


def layer_count(trace: Trace) -> int:
    return int(trace.meta["config"]["num_hidden_layers"])


def position_labels(trace: Trace, prefix: str = "") -> list[str]:
    """The tokens at the positions of a forward pass (the prompt, or a decode step's one token)."""
    if prefix.startswith("decode."):
        step = int(prefix.split(".")[1])
        generated = trace.meta.get("generated_labels") or []
        return [generated[step - 1] if step - 1 < len(generated) else "?"]
    return list(trace.meta.get("token_labels") or [])


def token_text(trace: Trace, token_id: int) -> str:
    """A vocabulary id as text: the trace's own label table (written at trace time), else the id."""
    labels = trace.meta.get("vocab_labels") or {}
    if str(token_id) in labels:
        return labels[str(token_id)]
    vocab = trace.meta.get("vocab")
    return vocab[token_id] if vocab and token_id < len(vocab) else str(token_id)


def _short(text: str, width: int = 8) -> str:
    text = text.replace("\n", "↵").replace(" ", "␣") or "∅"
    return text if len(text) <= width else text[:width - 1] + "…"


# -- logit lens --------------------------------------------------------------------------------------


def has_lens(trace: Trace, prefix: str = "") -> bool:
    return f"{prefix}lens.0.top_ids" in trace


def lens_grid(trace: Trace, prefix: str = "", lang: str = "en") -> Any:
    """Layers × positions: each block's top lens token, coloured by its probability; hover shows the top 5."""
    go = _go()
    layers = layer_count(trace)
    tokens = position_labels(trace, prefix)
    probs = np.stack([np.asarray(trace[f"{prefix}lens.{i}.top_probs"], dtype=np.float64) for i in range(layers)])
    ids = np.stack([np.asarray(trace[f"{prefix}lens.{i}.top_ids"]) for i in range(layers)])
    text = [[_short(token_text(trace, int(ids[i, p, 0]))) for p in range(ids.shape[1])] for i in range(layers)]
    hover = [["<br>".join(f"{token_text(trace, int(ids[i, p, j]))!r}  {probs[i, p, j]:.3g}"
                          for j in range(min(5, ids.shape[2]))) for p in range(ids.shape[1])] for i in range(layers)]
    cols = [f"{p}:{_short(tok, 10)}" for p, tok in enumerate(tokens)]
    rows = [f"{t('interp.layer', lang)} {i}" for i in range(layers)]
    fig = go.Figure(go.Heatmap(z=probs[:, :, 0], x=cols, y=rows, text=text, texttemplate="%{text}",
                               customdata=hover, hovertemplate="%{y} · %{x}<br>%{customdata}<extra></extra>",
                               colorscale="Blues", zmin=0, zmax=1, colorbar=dict(title="p")))
    fig.update_layout(title=t("interp.lens_title", lang), height=max(320, min(1400, 28 * layers + 160)),
                      margin=dict(l=10, r=10, t=50, b=10), yaxis_autorange="reversed")
    fig.update_xaxes(type="category", tickangle=-45)
    fig.update_yaxes(type="category")
    return fig


# -- residual stream and direct logit attribution ------------------------------------------------------


def _mlp_write(trace: Trace, prefix: str, i: int) -> np.ndarray:
    dense = f"{prefix}layers.{i}.mlp.down_proj"
    return np.asarray(trace[dense] if dense in trace else trace[f"{prefix}layers.{i}.moe.out"], dtype=np.float64)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    denom = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.where(denom > 0, np.sum(a * b, axis=-1) / np.where(denom > 0, denom, 1), 0.0)


def stream_stats(trace: Trace, prefix: str = "") -> dict[str, np.ndarray]:
    """Per layer [L, T]: the stream's norm after each block, what attention and the MLP / MoE wrote (norms) and
    the cosine of each write to the stream it was added to."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("stream", "attn", "mlp", "attn_cos", "mlp_cos")}
    previous = np.asarray(trace[f"{prefix}embed.out"], dtype=np.float64)
    for i in range(layer_count(trace)):
        attn = np.asarray(trace[f"{prefix}layers.{i}.attn.o_proj"], dtype=np.float64)
        mid = np.asarray(trace[f"{prefix}layers.{i}.resid_mid"], dtype=np.float64)
        mlp = _mlp_write(trace, prefix, i)
        post = np.asarray(trace[f"{prefix}layers.{i}.resid_post"], dtype=np.float64)
        out["attn"].append(np.linalg.norm(attn, axis=-1))
        out["attn_cos"].append(_cosine(attn, previous))
        out["mlp"].append(np.linalg.norm(mlp, axis=-1))
        out["mlp_cos"].append(_cosine(mlp, mid))
        out["stream"].append(np.linalg.norm(post, axis=-1))
        previous = post
    return {k: np.stack(v) for k, v in out.items()}


def has_stream(trace: Trace, prefix: str = "") -> bool:
    last = layer_count(trace) - 1
    needed = ("embed.out", f"layers.{last}.resid_post", f"layers.{last}.attn.o_proj")
    return all(f"{prefix}{n}" in trace for n in needed)


def stream_figure(trace: Trace, position: int, prefix: str = "", lang: str = "en") -> Any:
    """One position through the layers: the stream's norm, each write's norm, and its cosine to the stream."""
    go = _go()
    from plotly.subplots import make_subplots

    stats = stream_stats(trace, prefix)
    layers = list(range(stats["stream"].shape[0]))
    fig = make_subplots(rows=1, cols=2, subplot_titles=(t("interp.norms", lang), t("interp.cosines", lang)))
    for key, name in (("stream", "interp.stream"), ("attn", "interp.attn_write"), ("mlp", "interp.mlp_write")):
        fig.add_trace(go.Scatter(x=layers, y=stats[key][:, position], name=t(name, lang), mode="lines+markers"), 1, 1)
    for key, name in (("attn_cos", "interp.attn_write"), ("mlp_cos", "interp.mlp_write")):
        fig.add_trace(go.Scatter(x=layers, y=stats[key][:, position], name=f"cos {t(name, lang)}",
                                 mode="lines+markers"), 1, 2)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=50, b=10))
    fig.update_xaxes(title_text=t("interp.layer", lang))
    fig.update_yaxes(range=[-1, 1], row=1, col=2)
    return fig


def has_attribution(trace: Trace, prefix: str = "") -> bool:
    return f"{prefix}attrib.embed" in trace


def attribution_terms(trace: Trace, position: int, prefix: str = "") -> list[tuple[str, float]]:
    """Every direct term of the target logit at one position: embedding, each head, each MLP / expert."""
    terms = [("embed", float(trace[f"{prefix}attrib.embed"][position]))]
    for i in range(layer_count(trace)):
        heads = trace[f"{prefix}attrib.{i}.heads"]
        terms += [(f"L{i}.h{h}", float(heads[h, position])) for h in range(heads.shape[0])]
        mlp = f"{prefix}attrib.{i}.mlp"
        if mlp in trace:
            terms.append((f"L{i}.mlp", float(trace[mlp][position])))
        else:
            experts = trace[f"{prefix}attrib.{i}.experts"]
            terms += [(f"L{i}.e{e}", float(experts[e, position])) for e in np.flatnonzero(experts[:, position])]
    return terms


def attribution_figure(trace: Trace, position: int, prefix: str = "", lang: str = "en", top: int = 25) -> Any:
    """The largest direct terms of the target token's logit at one position, and their sum against the logit."""
    go = _go()
    terms = attribution_terms(trace, position, prefix)
    target = int(trace[f"{prefix}attrib.target_ids"][position])
    logit = float(trace[f"{prefix}logits"][position, target]) if f"{prefix}logits" in trace else None
    shown = sorted(terms, key=lambda kv: -abs(kv[1]))[:top]
    fig = go.Figure(go.Bar(x=[v for _, v in shown], y=[k for k, _ in shown], orientation="h",
                           marker_color=["#d62728" if v < 0 else "#1f77b4" for _, v in shown]))
    total = sum(v for _, v in terms)
    title = t("interp.attrib_title", lang, token=token_text(trace, target), total=f"{total:.4f}",
              logit="—" if logit is None else f"{logit:.4f}")
    fig.update_layout(title=title, height=max(320, 22 * len(shown) + 120), margin=dict(l=10, r=10, t=60, b=10),
                      yaxis_autorange="reversed")
    return fig


def layer_attribution_figure(trace: Trace, prefix: str = "", lang: str = "en") -> Any:
    """Layers × positions: each block's total direct contribution (all heads, then the MLP / experts)."""
    go = _go()
    layers = layer_count(trace)
    rows, z = [], []
    for i in range(layers):
        rows += [f"L{i} attn", f"L{i} mlp"]
        z.append(trace[f"{prefix}attrib.{i}.heads"].sum(axis=0))
        mlp = f"{prefix}attrib.{i}.mlp"
        z.append(trace[mlp] if mlp in trace else trace[f"{prefix}attrib.{i}.experts"].sum(axis=0))
    m = np.asarray(z, dtype=np.float64)
    limit = float(np.abs(m).max()) or 1.0
    cols = [f"{p}:{_short(tok, 10)}" for p, tok in enumerate(position_labels(trace, prefix))]
    fig = go.Figure(go.Heatmap(z=m, x=cols, y=rows, colorscale="RdBu", zmid=0, zmin=-limit, zmax=limit))
    fig.update_layout(title=t("interp.layer_attrib_title", lang), height=max(320, min(1400, 18 * len(rows) + 150)),
                      margin=dict(l=10, r=10, t=50, b=10), yaxis_autorange="reversed")
    fig.update_xaxes(type="category", tickangle=-45)
    fig.update_yaxes(type="category")
    return fig


# -- all heads -----------------------------------------------------------------------------------------


def heads_grid(trace: Trace, layers: list[int], prefix: str = "", lang: str = "en") -> Any:
    """Small multiples of attention patterns: one row per layer, one column per query head, titled with the KV head
    it shares (GQA) and framed in that group's colour."""
    go = _go()
    from plotly.subplots import make_subplots

    cfg = trace.meta["config"]
    heads, groups = cfg["num_attention_heads"], cfg["num_attention_heads"] // cfg["num_key_value_heads"]
    titles = [f"L{i} h{h}·kv{h // groups}" for i in layers for h in range(heads)]
    fig = make_subplots(rows=len(layers), cols=heads, subplot_titles=titles, horizontal_spacing=0.004,
                        vertical_spacing=min(0.04, 0.3 / max(1, len(layers))))
    tokens = position_labels(trace, prefix)
    for r, i in enumerate(layers, start=1):
        probs = np.asarray(trace[f"{prefix}layers.{i}.attn.probs"], dtype=np.float64)
        for h in range(heads):
            fig.add_trace(go.Heatmap(z=probs[h], zmin=0, zmax=1, colorscale="Viridis", showscale=False,
                                     hovertemplate=f"L{i} h{h} (kv{h // groups})<br>"
                                                   "query %{y} → key %{x}<br>p %{z:.3f}<extra></extra>"),
                          r, h + 1)
            colour = GROUP_COLOURS[(h // groups) % len(GROUP_COLOURS)]
            fig.update_xaxes(showticklabels=False, linecolor=colour, linewidth=3, mirror=True, row=r, col=h + 1)
            fig.update_yaxes(showticklabels=False, autorange="reversed", linecolor=colour, linewidth=3, mirror=True,
                             row=r, col=h + 1)
    fig.update_annotations(font_size=9)
    fig.update_layout(title=t("interp.heads_title", lang, tokens=len(tokens)), height=max(300, 110 * len(layers) + 80),
                      margin=dict(l=10, r=10, t=60, b=10))
    return fig


def head_view(trace: Trace, layer: int, query: int, prefix: str = "", lang: str = "en") -> Any:
    """BertViz-style: from one query token (left) to every key (right), one line per head, opacity = weight,
    coloured by GQA group; hover a key to see every head's weight on it."""
    go = _go()
    cfg = trace.meta["config"]
    heads, groups = cfg["num_attention_heads"], cfg["num_attention_heads"] // cfg["num_key_value_heads"]
    probs = np.asarray(trace[f"{prefix}layers.{layer}.attn.probs"], dtype=np.float64)[:, query]  # [H, S]
    tokens = position_labels(trace, prefix)
    keys = [tokens[s] if s < len(tokens) and not prefix else str(s) for s in range(probs.shape[1])]
    if prefix:  # a decode step attends to the prompt and every earlier token
        every = list(trace.meta.get("token_labels") or []) + list(trace.meta.get("generated_labels") or [])
        keys = [every[s] if s < len(every) else str(s) for s in range(probs.shape[1])]
    fig = go.Figure()
    n = probs.shape[1]
    for h in range(heads):
        colour = GROUP_COLOURS[(h // groups) % len(GROUP_COLOURS)]
        for s in np.flatnonzero(probs[h] > 0.02):
            fig.add_trace(go.Scatter(x=[0, 1], y=[query, s], mode="lines", opacity=float(min(1, 0.15 + probs[h, s])),
                                     line=dict(color=colour, width=1 + 4 * float(probs[h, s])), hoverinfo="skip",
                                     showlegend=False))
    hover = ["<br>".join(f"h{h} (kv{h // groups}) {probs[h, s]:.3f}" for h in range(heads)) for s in range(n)]
    fig.add_trace(go.Scatter(x=[1] * n, y=list(range(n)), mode="text", text=[_short(k, 14) for k in keys],
                             textposition="middle right", customdata=hover, showlegend=False,
                             hovertemplate="%{text}<br>%{customdata}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0], y=[query], mode="text", text=[_short(keys[query] if query < n else "?", 14)],
                             textposition="middle left", showlegend=False, hoverinfo="skip"))
    for g in range(cfg["num_key_value_heads"]):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(color=GROUP_COLOURS[g % 10]),
                                 name=f"kv{g}: h{g * groups}–h{(g + 1) * groups - 1}"))
    fig.update_layout(title=t("interp.head_view_title", lang, layer=layer), height=max(320, 26 * n + 120),
                      xaxis=dict(visible=False, range=[-0.6, 1.6]),
                      yaxis=dict(visible=False, autorange="reversed"), margin=dict(l=10, r=10, t=50, b=10))
    return fig


# -- two prompts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptDiff:
    """Two traces of one model: tokens side by side, the relative residual difference per layer and position,
    the lens' top token at the last position per layer, and the first layer where those differ."""

    tokens_a: list[str]
    tokens_b: list[str]
    difference: np.ndarray  # [L, T] ‖x_a − x_b‖ / ‖x_a‖ of resid_post at aligned positions
    top_a: list[str]
    top_b: list[str]
    diverges_at: int | None


def prompt_diff(a: Trace, b: Trace) -> PromptDiff:
    """Compare two traces of the same model (positions aligned from the start)."""
    layers = min(layer_count(a), layer_count(b))
    ta, tb = position_labels(a), position_labels(b)
    n = min(len(ta), len(tb))
    diff = []
    for i in range(layers):
        xa = np.asarray(a[f"layers.{i}.resid_post"], dtype=np.float64)[:n]
        xb = np.asarray(b[f"layers.{i}.resid_post"], dtype=np.float64)[:n]
        scale = np.linalg.norm(xa, axis=-1)
        diff.append(np.linalg.norm(xa - xb, axis=-1) / np.where(scale > 0, scale, 1))
    top_a = [token_text(a, int(a[f"lens.{i}.top_ids"][-1, 0])) for i in range(layers)]
    top_b = [token_text(b, int(b[f"lens.{i}.top_ids"][-1, 0])) for i in range(layers)]
    diverges = next((i for i in range(layers) if top_a[i] != top_b[i]), None)
    return PromptDiff(ta, tb, np.asarray(diff), top_a, top_b, diverges)


def can_compare_prompts(a: Trace, b: Trace) -> str | None:
    """Why two traces cannot be compared prompt to prompt, or None."""
    for trace in (a, b):
        if not (has_lens(trace) and "layers.0.resid_post" in trace):
            return "interp.needs_records"
    ca, cb = a.meta["config"], b.meta["config"]
    if ca["hidden_size"] != cb["hidden_size"] or ca["num_hidden_layers"] != cb["num_hidden_layers"]:
        return "interp.other_model"
    return None


def prompt_diff_figure(d: PromptDiff, lang: str = "en") -> Any:
    """Relative residual difference per layer and aligned position, the lens' last-position top tokens beside it."""
    go = _go()
    cols = [f"{p}:{_short(x, 8)}|{_short(y, 8)}" for p, (x, y) in enumerate(zip(d.tokens_a, d.tokens_b))]
    rows = [f"L{i}: {_short(x, 8)} | {_short(y, 8)}{' ◀' if i == d.diverges_at else ''}"
            for i, (x, y) in enumerate(zip(d.top_a, d.top_b))]
    fig = go.Figure(go.Heatmap(z=d.difference, x=cols, y=rows, colorscale="Reds", zmin=0,
                               hovertemplate="%{y}<br>%{x}<br>‖a−b‖/‖a‖ %{z:.3f}<extra></extra>"))
    fig.update_layout(title=t("interp.diff_title", lang), height=max(320, min(1400, 26 * len(rows) + 160)),
                      margin=dict(l=10, r=10, t=50, b=10), yaxis_autorange="reversed")
    fig.update_xaxes(type="category", tickangle=-45)
    fig.update_yaxes(type="category")
    return fig
