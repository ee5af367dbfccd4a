"""Plotly figures of a trace, shared by the Streamlit explorer and the notebooks.

Figures read records; they do not recompute the model. The two exceptions are teaching tools that are
labelled as such: sampling with other settings (``sampling_figure`` runs ``ops.sampling_probs`` on the
recorded logits) and the top-k equivalence table (``topk_equivalence`` runs both orders of the same ops).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tracer import ops
from tracer.compare import Row
from tracer.show import axis_labels
from tracer.tracefile import Trace


def _go() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError:
        from tracer import TracerError

        raise TracerError("figures need plotly: pip install 'qwen3-tracer[app]'") from None
    return go


def labels_for(trace: Trace, name: str) -> list[list[str] | None]:
    """Axis labels of a record (tokens for positions, vocabulary for V), made unique for plotly."""
    info = trace.info[name]
    raw = axis_labels(trace, name, info["schema_shape"], len(info["shape"]))
    return [None if axis is None else [f"{k}:{label}" for k, label in enumerate(axis)] for axis in raw]


def heatmap(matrix: np.ndarray, rows: list[str] | None = None, cols: list[str] | None = None, title: str = "",
            decimals: int = 3, colorscale: str = "RdBu", symmetric: bool = True) -> Any:
    """A 2-D array as a heatmap with row/column labels; small ones carry their numbers in the cells."""
    go = _go()
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim == 1:
        m = m[None, :]
    shown = np.where(m < -1e30, np.nan, m)  # −∞ stand-ins would flatten the colour scale
    finite = shown[np.isfinite(shown)]
    limit = float(np.abs(finite).max()) if finite.size else 1.0
    text = np.vectorize(lambda v: "−∞" if v < -1e30 else f"{v:.{decimals}f}")(m) if m.size <= 400 else None
    fig = go.Figure(go.Heatmap(
        z=shown, x=cols or list(range(m.shape[1])), y=rows or list(range(m.shape[0])), colorscale=colorscale,
        zmid=0 if symmetric else None, zmin=-limit if symmetric else None, zmax=limit if symmetric else None,
        text=text, texttemplate="%{text}" if text is not None else None, hoverongaps=False))
    fig.update_layout(title=title, yaxis_autorange="reversed", margin=dict(l=10, r=10, t=40, b=10),
                      height=max(260, min(700, 40 * m.shape[0] + 120)))
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig


def record_heatmap(trace: Trace, name: str, head: int = 0, title: str | None = None) -> Any:
    """A record as a heatmap: 2-D as is, 3-D (per head) one head, 1-D as a single row."""
    value = np.asarray(trace[name])
    labels = labels_for(trace, name)
    if value.ndim == 3:
        return heatmap(value[head], labels[1], labels[2], title or f"{name} [head {head}]")
    if value.ndim == 1:
        return heatmap(value, None, labels[0], title or name)
    return heatmap(value, labels[0], labels[1], title or name)


def attention_figure(trace: Trace, layer: int, head: int, prefix: str = "") -> Any:
    """Scores, masked scores and probabilities of one head, side by side, with token labels.

    Masked positions are left blank in the middle panel (their value, a −∞ stand-in, is in the mask record).
    """
    go = _go()
    from plotly.subplots import make_subplots

    n = f"{prefix}layers.{layer}.attn"
    mask = np.asarray(trace[f"{n}.mask"], dtype=np.float64)
    panels = [np.asarray(trace[f"{n}.scores"][head], dtype=np.float64),
              np.where(mask < 0, np.nan, np.asarray(trace[f"{n}.masked_scores"][head], dtype=np.float64)),
              np.asarray(trace[f"{n}.probs"][head], dtype=np.float64)]
    labels = labels_for(trace, f"{n}.scores")
    fig = make_subplots(rows=1, cols=3, subplot_titles=["scores  QKᵀ/√Dh", "+ causal mask (masked: blank)", "softmax"],
                        horizontal_spacing=0.08)
    small = panels[0].size <= 144
    for col, m in enumerate(panels, start=1):
        fig.add_trace(go.Heatmap(z=m, x=labels[2], y=labels[1], colorscale="Blues" if col == 3 else "RdBu",
                                 zmid=None if col == 3 else 0, showscale=False, hoverongaps=False,
                                 text=np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.3f}")(m) if small else None,
                                 texttemplate="%{text}" if small else None), row=1, col=col)
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    fig.update_layout(margin=dict(l=10, r=10, t=50, b=10), height=420, title=f"layer {layer}, head {head}")
    return fig


def gqa_figure(num_heads: int, num_kv_heads: int) -> Any:
    """Which query heads share which key/value head: query head h reads KV head h // (H / Hkv)."""
    go = _go()
    group = num_heads // num_kv_heads
    fig = go.Figure()
    for h in range(num_heads):
        g = h // group
        fig.add_trace(go.Scatter(x=[0, 1], y=[h, g * group + (group - 1) / 2], mode="lines",
                                 line=dict(color=f"hsl({int(360 * g / num_kv_heads)},60%,50%)"), showlegend=False,
                                 hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[0] * num_heads, y=list(range(num_heads)), mode="markers+text",
                             text=[f"Q{h}" for h in range(num_heads)], textposition="middle left", showlegend=False))
    fig.add_trace(go.Scatter(x=[1] * num_kv_heads, y=[g * group + (group - 1) / 2 for g in range(num_kv_heads)],
                             mode="markers+text", marker=dict(size=14), text=[f"KV{g}" for g in range(num_kv_heads)],
                             textposition="middle right", showlegend=False))
    fig.update_layout(title=f"GQA: {num_heads} query heads share {num_kv_heads} key/value heads ({group} per group)",
                      xaxis=dict(visible=False, range=[-0.3, 1.3]), yaxis=dict(visible=False, autorange="reversed"),
                      height=max(250, 22 * num_heads + 80), margin=dict(l=10, r=10, t=40, b=10))
    return fig


def rope_angle_figure(trace: Trace, prefix: str = "") -> Any:
    """The rotation angle (radians, wrapped to (−π, π]) of every dimension pair at every position."""
    cos = np.asarray(trace[f"{prefix}rope.cos"], dtype=np.float64)
    sin = np.asarray(trace[f"{prefix}rope.sin"], dtype=np.float64)
    half = cos.shape[1] // 2
    angles = np.arctan2(sin[:, :half], cos[:, :half])
    rows = labels_for(trace, f"{prefix}rope.cos")[0]
    return heatmap(angles, rows, [f"pair {j}" for j in range(half)], "rotation angle φ[t, j] (radians)",
                   decimals=2, colorscale="Twilight", symmetric=True)


def rope_rotation_figure(trace: Trace, layer: int, head: int, kind: str = "q", pairs: int = 4) -> Any:
    """Each token's first dimension pairs before and after RoPE: the same length, turned by φ."""
    go = _go()
    before = np.asarray(trace[f"layers.{layer}.attn.{kind}_norm"][head], dtype=np.float64)
    after = np.asarray(trace[f"layers.{layer}.attn.{kind}_rope"][head], dtype=np.float64)
    half = before.shape[1] // 2
    tokens = labels_for(trace, f"layers.{layer}.attn.{kind}_norm")[1]
    fig = go.Figure()
    for j in range(min(pairs, half)):
        for t in range(before.shape[0]):
            for vec, style in ((before, "dot"), (after, "solid")):
                fig.add_trace(go.Scatter(x=[0, vec[t, j]], y=[0, vec[t, j + half]], mode="lines+markers",
                                         line=dict(dash=style), name=f"pair {j}, {tokens[t]}",
                                         legendgroup=f"{j}-{t}", showlegend=style == "solid"))
    fig.update_layout(title=f"{kind} pairs (x[j], x[j+Dh/2]) before (dotted) and after (solid) RoPE, layer {layer} "
                            f"head {head}", xaxis=dict(scaleanchor="y"), height=480, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def relative_position_figure(trace: Trace, layer: int, head: int) -> Any:
    """Recorded scores against the distance t − s between query and key: what RoPE makes them depend on."""
    go = _go()
    scores = np.asarray(trace[f"layers.{layer}.attn.scores"][head], dtype=np.float64)
    t, s = np.meshgrid(np.arange(scores.shape[0]), np.arange(scores.shape[1]), indexing="ij")
    causal = s <= t
    fig = go.Figure(go.Scatter(x=(t - s)[causal], y=scores[causal], mode="markers",
                               text=[f"q{a} k{b}" for a, b in zip(t[causal], s[causal])]))
    fig.update_layout(title=f"scores by relative distance t − s (layer {layer}, head {head})",
                      xaxis_title="t − s", yaxis_title="score", height=360, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def expert_load_figure(trace: Trace, num_experts: int) -> Any:
    """How many tokens each expert received, per sparse layer of the prompt."""
    layers = sorted({int(n.split(".")[1]) for n in trace.names if n.endswith(".moe.topk_ids") and n.startswith("layers.")})
    load = np.zeros((len(layers), num_experts))
    for row, i in enumerate(layers):
        ids = np.asarray(trace[f"layers.{i}.moe.topk_ids"])
        load[row] = np.bincount(ids.ravel(), minlength=num_experts)
    return heatmap(load, [f"layer {i}" for i in layers], [f"E{e}" for e in range(num_experts)],
                   "tokens routed to each expert", decimals=0, colorscale="Viridis", symmetric=False)


def topk_equivalence(trace: Trace, layer: int) -> list[dict[str, Any]]:
    """Per token: softmax over the chosen logits vs softmax over all, then renormalise the chosen (same numbers)."""
    logits = np.asarray(trace[f"layers.{layer}.moe.router_logits"], dtype=np.float64)
    ids = np.asarray(trace[f"layers.{layer}.moe.topk_ids"])
    direct = ops.softmax(np.take_along_axis(logits, ids, axis=-1))
    via_probs = ops.renormalize(np.take_along_axis(ops.softmax(logits), ids, axis=-1))
    recorded = np.asarray(trace[f"layers.{layer}.moe.topk_weights"], dtype=np.float64)
    tokens = labels_for(trace, f"layers.{layer}.moe.router_logits")[0]
    return [{"token": tokens[t], "experts": ids[t].tolist(), "softmax(top-k logits)": np.round(direct[t], 6).tolist(),
             "renormalised top-k of softmax": np.round(via_probs[t], 6).tolist(),
             "recorded weights": np.round(recorded[t], 6).tolist()} for t in range(len(ids))]


def top_tokens(probs: np.ndarray, labels: list[str] | None, k: int = 15) -> list[tuple[int, str, float]]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), labels[i] if labels and i < len(labels) else str(int(i)), float(probs[i])) for i in order]


def sampling_figure(logits: np.ndarray, temperature: float, top_k: int | None, top_p: float | None,
                    labels: list[str] | None = None, k: int = 15) -> tuple[Any, np.ndarray]:
    """Next-token probabilities for other sampling settings, computed on the recorded logits."""
    go = _go()
    logits = np.asarray(logits, dtype=np.float64)
    probs = ops.greedy_probs(logits) if temperature == 0 else ops.sampling_probs(logits, temperature, top_k, top_p)
    base = ops.softmax(logits)
    rows = top_tokens(base, labels, k)
    names = [f"{i}:{label!r}" for i, label, _ in rows]
    fig = go.Figure([go.Bar(x=names, y=[p for *_, p in rows], name="softmax(ℓ)", opacity=0.45),
                     go.Bar(x=names, y=[float(probs[i]) for i, *_ in rows], name="after T / top-k / top-p")])
    fig.update_layout(barmode="overlay", title=f"T={temperature:g}, top-k={top_k}, top-p={top_p}", height=380,
                      margin=dict(l=10, r=10, t=40, b=10), yaxis_title="probability")
    return fig, probs


def pipeline_figure(trace: Trace, max_layers: int = 28) -> Any:
    """The data flow of the prompt's forward pass, drawn from the ``inputs`` of every record.

    One column per stage (in computation order), one row per layer (row 0: tokens and embedding; last row:
    final norm, logits, sampling); an expert's records sit within its layer's row. Edges are the inputs.
    """
    go = _go()
    cfg = trace.meta["config"]
    layers = min(max_layers, cfg["num_hidden_layers"])
    experts = max(1, cfg.get("num_experts") or 1)
    columns: dict[str, int] = {}
    positions: dict[str, tuple[float, float]] = {}
    for name in trace.names:
        if name.startswith("decode.") or (name.startswith("sample.") and not name.startswith("sample.0.")):
            continue
        parts = name.split(".")
        if parts[0] == "vision":  # Qwen3-VL: the vision tower in rows above the embedding (-depth-1 … -1)
            depth = trace.meta["vision"]["config"]["depth"]
            if parts[1] == "blocks":
                stage, row = "vision.blocks." + ".".join(parts[3:]), int(parts[2]) - depth
            elif parts[1] == "deepstack":  # beside the block it taps
                tap = trace.meta["vision"]["config"]["deepstack_visual_indexes"][int(parts[2])]
                stage, row = "vision.deepstack." + ".".join(parts[3:]), tap - depth + 0.5
            elif parts[1] == "images":
                stage, row = "vision.images." + ".".join(parts[3:]), -depth - 1.0 + 0.3 * int(parts[2])
            else:
                stage, row = name, (0.0 if parts[1] == "merger" else -depth - 1.0)
        elif parts[0] == "layers":
            if int(parts[1]) >= layers:
                continue
            stage, row = ".".join(parts[2:]), int(parts[1]) + 1.0
            if parts[2:4] == ["moe", "experts"]:
                stage, row = "moe.experts." + parts[5], row + 0.8 * int(parts[4]) / experts
        else:
            stage, row = name, (0.0 if name in ("tokens", "embed.onehot", "embed.out", "rope.cos", "rope.sin")
                                else layers + 1.0)
        positions[name] = (columns.setdefault(stage, len(columns)), row)
    edge_x: list[float | None] = []
    edge_y: list[float | None] = []
    for name, (x, y) in positions.items():
        for src in trace.info[name]["inputs"]:
            if src in positions:
                edge_x += [positions[src][0], x, None]
                edge_y += [positions[src][1], y, None]
    xs, ys = zip(*positions.values())
    fig = go.Figure([
        go.Scatter(x=edge_x, y=edge_y, mode="lines", line=dict(width=0.6, color="#bbb"), hoverinfo="skip"),
        go.Scatter(x=xs, y=ys, mode="markers", marker=dict(size=9, color=xs, colorscale="Turbo"),
                   customdata=list(positions), hovertemplate="%{customdata}<extra></extra>"),
    ])
    fig.update_layout(title="tokens → embedding → blocks → final norm → LM head → sampling (click a node)",
                      showlegend=False, height=max(400, 22 * layers + 160), margin=dict(l=10, r=10, t=40, b=10),
                      xaxis=dict(visible=False), yaxis=dict(title="layer + 1 (0: tokens and embedding)",
                                                            autorange="reversed"))
    return fig


def compare_figure(rows: list[Row]) -> Any:
    """Max relative error of every common record, in computation order (log scale)."""
    go = _go()
    common = [r for r in rows if r.max_rel is not None]
    colors = ["#2a9d8f" if r.verdict == "OK" else "#e63946" for r in common]
    fig = go.Figure(go.Bar(x=[r.name for r in common], y=[max(r.max_rel, 1e-12) if math.isfinite(r.max_rel) else 1.0
                                                            for r in common], marker_color=colors))
    fig.update_layout(yaxis_type="log", yaxis_title="max relative error", height=380,
                      xaxis=dict(showticklabels=len(common) <= 60), margin=dict(l=10, r=10, t=30, b=10))
    return fig


def residual_norms_figure(trace: Trace) -> Any:
    """RMS of the last token's residual stream after every block: how it grows through the layers."""
    go = _go()
    layers = trace.meta["config"]["num_hidden_layers"]
    rms = [float(np.sqrt(np.mean(np.asarray(trace[f"layers.{i}.resid_post"], dtype=np.float64)[-1] ** 2)))
           for i in range(layers) if f"layers.{i}.resid_post" in trace]
    fig = go.Figure(go.Scatter(x=list(range(len(rms))), y=rms, mode="lines+markers"))
    fig.update_layout(title="RMS of the residual stream (last token) after each block", xaxis_title="layer",
                      yaxis_title="RMS", height=340, margin=dict(l=10, r=10, t=40, b=10))
    return fig
