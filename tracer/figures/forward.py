"""Plotly figures of a trace, shared by the Streamlit explorer and the notebooks.

Figures read records; they do not recompute the model. The exceptions are teaching tools that say so in
their titles: sampling with other settings (``sampling_figure`` runs ``ops.sampling_probs`` on the recorded
logits), the top-k equivalence table, and RoPE's score-against-distance curve (``rope_distance_figure``
rotates one recorded q and k to other positions). Every title, axis and legend comes from the ``figures``
catalog in the language asked for.

Large matrices are drawn downsampled (each cell the mean of a block), never blank; ``heatmap`` takes a
region to draw at full resolution.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from tracer.engine import ops
from tracer.i18n import translator
from tracer.traces.compare import Row
from tracer.traces.show import axis_labels
from tracer.traces.tracefile import Trace

MASKED_BELOW = -1e30  # additive −∞ stand-ins (masks, suppressed tokens) are below this
MAX_CELLS = 120  # rows or columns of a heatmap beyond which it is drawn downsampled
MASKED_COLOR = "#c8c8c8"


def _go() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError:
        from tracer import TracerError

        raise TracerError.of("errors.needs_plotly") from None
    return go


def _layout(fig: Any, title: str, height: int = 380, **extra: Any) -> Any:
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=50, b=10), height=height, **extra)
    return fig


def labels_for(trace: Trace, name: str) -> list[list[str] | None]:
    """Axis labels of a record (tokens for positions, vocabulary for V), made unique for plotly."""
    info = trace.info[name]
    raw = axis_labels(trace, name, info["schema_shape"], len(info["shape"]))
    return [None if axis is None else [f"{k}:{label}" for k, label in enumerate(axis)] for axis in raw]


# ---------------------------------------------------------------------------------------------------
# Heatmaps: small ones with their numbers, big ones downsampled, masked cells grey
# ---------------------------------------------------------------------------------------------------


def downsample(m: np.ndarray, max_rows: int = MAX_CELLS, max_cols: int = MAX_CELLS
               ) -> tuple[np.ndarray, list[tuple[int, int]], list[tuple[int, int]]]:
    """A matrix as at most max_rows × max_cols block means (−∞ stand-ins left out; a block of only masked
    cells stays masked), with the [start, stop) range of every kept row and column.

    >>> small, rows, cols = downsample(np.arange(16.0).reshape(4, 4), 2, 2)
    >>> small, rows
    (array([[ 2.5,  4.5],
           [10.5, 12.5]]), [(0, 2), (2, 4)])
    """
    m = np.asarray(m, dtype=np.float64)
    row_edges = np.linspace(0, m.shape[0], min(m.shape[0], max_rows) + 1).astype(int)
    col_edges = np.linspace(0, m.shape[1], min(m.shape[1], max_cols) + 1).astype(int)
    masked = m < MASKED_BELOW
    finite = np.where(masked, 0.0, m)
    sums = np.add.reduceat(np.add.reduceat(finite, row_edges[:-1], axis=0), col_edges[:-1], axis=1)
    counts = np.add.reduceat(np.add.reduceat((~masked).astype(np.float64), row_edges[:-1], axis=0),
                             col_edges[:-1], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
    return out, list(zip(row_edges[:-1].tolist(), row_edges[1:].tolist())), \
        list(zip(col_edges[:-1].tolist(), col_edges[1:].tolist()))


def _range_labels(ranges: list[tuple[int, int]], labels: list[str] | None) -> list[str]:
    out = []
    for a, b in ranges:
        if b - a == 1:
            out.append(labels[a] if labels and a < len(labels) else str(a))
        else:
            out.append(f"{a}–{b - 1}")
    return out


def _cell(v: float, decimals: int) -> str:
    """A cell's number as text, without a minus sign on a value that rounds to zero.

    >>> _cell(-0.0004, 2), _cell(-1.5, 1)
    ('0.00', '-1.5')
    """
    text = f"{v:.{decimals}f}"
    return text.lstrip("-") if float(text) == 0 else text


def heatmap(matrix: np.ndarray, rows: list[str] | None = None, cols: list[str] | None = None, title: str = "",
            decimals: int = 3, colorscale: Any = "RdBu", symmetric: bool = True, lang: str = "en",
            region: tuple[int, int, int, int] | None = None, zrange: tuple[float, float] | None = None) -> Any:
    """A 2-D array as a heatmap with row/column labels.

    Small ones carry their numbers in the cells; masked cells (−∞ stand-ins) are grey and read "−∞";
    ones larger than ``MAX_CELLS`` on a side are drawn as block means (the title says so). ``region``
    (row start, row stop, column start, column stop) draws that part at full resolution; ``zrange`` fixes the
    colour scale's ends.
    """
    go = _go()
    tr = translator(lang)
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim == 1:
        m = m[None, :]
    if region is not None:
        r0, r1, c0, c1 = region
        m = m[r0:r1, c0:c1]
        rows = (rows[r0:r1] if rows else [str(k) for k in range(r0, r1)])
        cols = (cols[c0:c1] if cols else [str(k) for k in range(c0, c1)])
        title = f"{title} · {tr('figures.region', rows=f'{r0}–{r1 - 1}', cols=f'{c0}–{c1 - 1}')}"
    if m.shape[0] > MAX_CELLS or m.shape[1] > MAX_CELLS:
        small, row_ranges, col_ranges = downsample(m)
        rh, cw = max(b - a for a, b in row_ranges), max(b - a for a, b in col_ranges)
        title = f"{title} · {tr('figures.downsampled', rows=m.shape[0], cols=m.shape[1], rh=rh, cw=cw)}"
        m, rows, cols = small, _range_labels(row_ranges, rows), _range_labels(col_ranges, cols)
    masked = m < MASKED_BELOW
    shown = np.where(masked, np.nan, m)
    finite = shown[np.isfinite(shown)]
    limit = float(np.abs(finite).max()) if finite.size else 1.0
    limit = limit or 1.0
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - 1.0, hi + 1.0
    if zrange is not None:
        lo, hi = zrange
    text = None
    if m.size <= 400:
        text = np.where(masked, "−∞", np.vectorize(lambda v: _cell(v, decimals))(np.where(masked, 0, m)))
    fig = go.Figure(go.Heatmap(
        z=shown, x=list(cols) if cols else list(range(m.shape[1])), y=list(rows) if rows else list(range(m.shape[0])),
        colorscale=colorscale, zmin=-limit if symmetric and zrange is None else lo,
        zmax=limit if symmetric and zrange is None else hi,
        text=text, texttemplate="%{text}" if text is not None else None, hoverongaps=True))
    _layout(fig, title, max(260, min(720, 30 * m.shape[0] + 140)), plot_bgcolor=MASKED_COLOR)
    fig.update_xaxes(type="category", showgrid=False)
    fig.update_yaxes(type="category", autorange="reversed", showgrid=False)
    return fig


def record_heatmap(trace: Trace, name: str, head: int = 0, title: str | None = None, lang: str = "en",
                   region: tuple[int, int, int, int] | None = None) -> Any:
    """A record as a heatmap: 2-D as is, 3-D (per head) one head, 1-D as a single row."""
    tr = translator(lang)
    value = np.asarray(trace[name])
    labels = labels_for(trace, name)
    if value.ndim == 3:
        return heatmap(value[head], labels[1], labels[2], title or tr("figures.record_head", name=name, head=head),
                       lang=lang, region=region)
    if value.ndim == 1:
        return heatmap(value, None, labels[0], title or name, lang=lang, region=region)
    if value.ndim == 0:
        return heatmap(value.reshape(1, 1), None, None, title or name, lang=lang)
    return heatmap(value, labels[0], labels[1], title or name, lang=lang, region=region)


def mask_figure(mask: np.ndarray, rows: list[str] | None, cols: list[str] | None, lang: str = "en") -> Any:
    """The causal mask as may-look (1) / masked (0); large masks as the share of visible keys per block."""
    tr = translator(lang)
    visible = (np.asarray(mask, dtype=np.float64) > MASKED_BELOW).astype(np.float64)
    return heatmap(visible, rows, cols, tr("figures.mask_title"), decimals=0,
                   colorscale=[[0, "#3b4cc0"], [1, "#f7f7f7"]], symmetric=False, lang=lang, zrange=(0.0, 1.0))


# ---------------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------------


def attention_figure(trace: Trace, layer: int, head: int, prefix: str = "", lang: str = "en") -> Any:
    """Scores, masked scores and probabilities of one head, side by side, with token labels.

    Masked positions are grey (their value, a −∞ stand-in, is in the mask record). Long prompts are drawn
    downsampled.
    """
    go = _go()
    from plotly.subplots import make_subplots

    tr = translator(lang)
    n = f"{prefix}layers.{layer}.attn"
    mask = np.asarray(trace[f"{n}.mask"], dtype=np.float64)
    panels = [np.asarray(trace[f"{n}.scores"][head], dtype=np.float64),
              np.where(mask < 0, np.nan, np.asarray(trace[f"{n}.masked_scores"][head], dtype=np.float64)),
              np.asarray(trace[f"{n}.probs"][head], dtype=np.float64)]
    labels = labels_for(trace, f"{n}.scores")
    rows, cols = labels[1], labels[2]
    if max(panels[0].shape) > MAX_CELLS:
        shrunk = [downsample(np.where(np.isnan(p), -np.inf, p)) for p in panels]
        rows, cols = _range_labels(shrunk[0][1], rows), _range_labels(shrunk[0][2], cols)
        panels = [np.where(s[0] < MASKED_BELOW, np.nan, s[0]) for s in shrunk]
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                        subplot_titles=[tr("figures.attn_scores"), tr("figures.attn_masked"), tr("figures.attn_probs")])
    small = panels[0].size <= 144
    for col, m in enumerate(panels, start=1):
        fig.add_trace(go.Heatmap(z=m, x=cols, y=rows, colorscale="Blues" if col == 3 else "RdBu",
                                 zmid=None if col == 3 else 0, showscale=False, hoverongaps=True,
                                 text=np.vectorize(lambda v: "−∞" if np.isnan(v) else f"{v:.3f}")(m) if small else None,
                                 texttemplate="%{text}" if small else None), row=1, col=col)
    fig.update_yaxes(autorange="reversed", type="category", showgrid=False)
    fig.update_xaxes(type="category", showgrid=False)
    return _layout(fig, tr("figures.attn_title", layer=layer, head=head), 440, plot_bgcolor=MASKED_COLOR)


def decode_attention_figure(trace: Trace, step: int, layer: int, head: int, lang: str = "en") -> Any:
    """A decode step: its one new query against every cached key — the scores and the attention weights,
    one bar per key position, labelled with the key's token."""
    go = _go()
    from plotly.subplots import make_subplots

    tr = translator(lang)
    n = f"decode.{step}.layers.{layer}.attn"
    scores = np.asarray(trace[f"{n}.scores"][head], dtype=np.float64)[-1]
    probs = np.asarray(trace[f"{n}.probs"][head], dtype=np.float64)[-1]
    keys = labels_for(trace, f"{n}.scores")[2] or [str(s) for s in range(len(probs))]
    query = (labels_for(trace, f"{n}.scores")[1] or ["?"])[-1]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[tr("figures.decode_scores"), tr("figures.decode_probs")])
    fig.add_trace(go.Bar(x=keys, y=scores, name=tr("figures.decode_scores"), marker_color="#4c78a8"), row=1, col=1)
    fig.add_trace(go.Bar(x=keys, y=probs, name=tr("figures.decode_probs"), marker_color="#f58518"), row=2, col=1)
    fig.update_xaxes(type="category", title_text=tr("figures.key_axis"), row=2, col=1)
    return _layout(fig, tr("figures.decode_title", step=step, layer=layer, head=head, query=query,
                           keys=len(probs)), 480, showlegend=False)


def gqa_figure(num_heads: int, num_kv_heads: int, lang: str = "en") -> Any:
    """Which query heads share which key/value head: query head h reads KV head h // (H / Hkv)."""
    go = _go()
    tr = translator(lang)
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
    return _layout(fig, tr("figures.gqa_title", heads=num_heads, kv=num_kv_heads, group=group),
                   max(250, 22 * num_heads + 80), xaxis=dict(visible=False, range=[-0.3, 1.3]),
                   yaxis=dict(visible=False, autorange="reversed"))


# ---------------------------------------------------------------------------------------------------
# RoPE
# ---------------------------------------------------------------------------------------------------


def rope_angle_figure(trace: Trace, prefix: str = "", lang: str = "en") -> Any:
    """The rotation angle (radians, wrapped to (−π, π]) of every dimension pair at every position."""
    tr = translator(lang)
    cos = np.asarray(trace[f"{prefix}rope.cos"], dtype=np.float64)
    sin = np.asarray(trace[f"{prefix}rope.sin"], dtype=np.float64)
    half = cos.shape[1] // 2
    angles = np.arctan2(sin[:, :half], cos[:, :half])
    rows = labels_for(trace, f"{prefix}rope.cos")[0]
    return heatmap(angles, rows, [tr("figures.pair", j=j) for j in range(half)], tr("figures.rope_angle_title"),
                   decimals=2, colorscale="Twilight", symmetric=True, lang=lang)


def rope_rotation_figure(trace: Trace, layer: int, head: int, kind: str = "q", pairs: int = 4,
                         lang: str = "en", max_tokens: int = 8) -> Any:
    """Each token's first dimension pairs before and after RoPE: the same length, turned by φ."""
    go = _go()
    tr = translator(lang)
    before = np.asarray(trace[f"layers.{layer}.attn.{kind}_norm"][head], dtype=np.float64)
    after = np.asarray(trace[f"layers.{layer}.attn.{kind}_rope"][head], dtype=np.float64)
    half = before.shape[1] // 2
    tokens = labels_for(trace, f"layers.{layer}.attn.{kind}_norm")[1]
    fig = go.Figure()
    for j in range(min(pairs, half)):
        for t in range(min(before.shape[0], max_tokens)):
            for vec, style in ((before, "dot"), (after, "solid")):
                fig.add_trace(go.Scatter(x=[0, vec[t, j]], y=[0, vec[t, j + half]], mode="lines+markers",
                                         line=dict(dash=style), name=f"{tr('figures.pair', j=j)}, {tokens[t]}",
                                         legendgroup=f"{j}-{t}", showlegend=style == "solid"))
    return _layout(fig, tr("figures.rope_rotation_title", kind=kind, layer=layer, head=head), 480,
                   xaxis=dict(scaleanchor="y"))


def rope_inv_freq_of(config: dict[str, Any]) -> np.ndarray:
    """Radians per position of each pair, from a trace's config (explicit degrees in the toys)."""
    degrees = config.get("rope_degrees_per_position")
    if degrees:
        return np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return ops.rope_inv_freq(int(config["head_dim"]), float(config["rope_theta"]))


def rope_scores_by_distance(q: np.ndarray, k: np.ndarray, inv_freq: np.ndarray, distances: np.ndarray,
                            key_position: int, scale: float) -> np.ndarray:
    """The score of one fixed (q, k) pair with k at ``key_position`` and q ``d`` positions later, for each d.

    >>> q = k = np.array([1.0, 0.0])
    >>> rope_scores_by_distance(q, k, np.array([np.pi / 2]), np.arange(3), 5, 1.0).round(6) + 0
    array([ 1.,  0., -1.])
    """
    positions = np.concatenate([[key_position], key_position + np.asarray(distances)])
    cos, sin = ops.rope_tables(positions, inv_freq, np.float64)
    k_rot = ops.apply_rope(np.asarray(k, dtype=np.float64)[None, None], cos[:1], sin[:1])[0, 0]
    q_rot = ops.apply_rope(np.broadcast_to(np.asarray(q, dtype=np.float64), (len(distances), len(q)))[None],
                           cos[1:], sin[1:])[0]
    return q_rot @ k_rot * scale


def rope_distance_figure(trace: Trace, layer: int, head: int, query: int, key: int, max_distance: int = 256,
                         lang: str = "en") -> Any:
    """RoPE's relative-position dependence: one fixed pair — the recorded q of token ``query`` and k of token
    ``key`` before rotation (after QK-Norm) — rotated to positions d apart, for every d from 0 to
    ``max_distance``, with the key at three different absolute positions. The curves coincide: the score
    depends on the distance only."""
    go = _go()
    tr = translator(lang)
    cfg = trace.meta["config"]
    group = cfg["num_attention_heads"] // cfg["num_key_value_heads"]
    q = np.asarray(trace[f"layers.{layer}.attn.q_norm"][head, query], dtype=np.float64)
    k = np.asarray(trace[f"layers.{layer}.attn.k_norm"][head // group, key], dtype=np.float64)
    inv_freq = np.asarray(trace["rope.inv_freq"], dtype=np.float64) if "rope.inv_freq" in trace else \
        rope_inv_freq_of(cfg)
    factor = float(trace["rope.attention_factor"]) if "rope.attention_factor" in trace else 1.0
    distances = np.arange(0, max_distance + 1)
    scale = cfg["head_dim"] ** -0.5 * factor ** 2  # RoPE scaling's factor a is on both cos and sin
    tokens = labels_for(trace, f"layers.{layer}.attn.q_norm")[1]
    fig = go.Figure()
    for base, dash in ((0, "solid"), (100, "dash"), (1000, "dot")):
        fig.add_trace(go.Scatter(x=distances, y=rope_scores_by_distance(q, k, inv_freq, distances, base, scale),
                                 mode="lines", line=dict(dash=dash), name=tr("figures.key_at", pos=base)))
    return _layout(fig, tr("figures.rope_distance_title", q=tokens[query], k=tokens[key], layer=layer, head=head),
                   400, xaxis_title=tr("figures.distance_axis"), yaxis_title=tr("figures.score_axis"))


# ---------------------------------------------------------------------------------------------------
# Mixture of Experts
# ---------------------------------------------------------------------------------------------------


def expert_load_figure(trace: Trace, num_experts: int, lang: str = "en") -> Any:
    """How many tokens each expert received, per sparse layer of the prompt."""
    tr = translator(lang)
    layers = sorted({int(n.split(".")[1]) for n in trace.names if n.endswith(".moe.topk_ids") and n.startswith("layers.")})
    load = np.zeros((len(layers), num_experts))
    for row, i in enumerate(layers):
        ids = np.asarray(trace[f"layers.{i}.moe.topk_ids"])
        load[row] = np.bincount(ids.ravel(), minlength=num_experts)
    return heatmap(load, [tr("figures.layer_n", i=i) for i in layers], [f"E{e}" for e in range(num_experts)],
                   tr("figures.expert_load_title"), decimals=0, colorscale="Viridis", symmetric=False, lang=lang)


def topk_equivalence(trace: Trace, layer: int, lang: str = "en") -> list[dict[str, Any]]:
    """Per token: softmax over the chosen logits vs softmax over all, then renormalise the chosen (same numbers)."""
    tr = translator(lang)
    logits = np.asarray(trace[f"layers.{layer}.moe.router_logits"], dtype=np.float64)
    ids = np.asarray(trace[f"layers.{layer}.moe.topk_ids"])
    direct = ops.softmax(np.take_along_axis(logits, ids, axis=-1))
    via_probs = ops.renormalize(np.take_along_axis(ops.softmax(logits), ids, axis=-1))
    recorded = np.asarray(trace[f"layers.{layer}.moe.topk_weights"], dtype=np.float64)
    tokens = labels_for(trace, f"layers.{layer}.moe.router_logits")[0]
    return [{tr("figures.col_token"): tokens[t], tr("figures.col_experts"): ids[t].tolist(),
             tr("figures.col_softmax_topk"): np.round(direct[t], 6).tolist(),
             tr("figures.col_renorm"): np.round(via_probs[t], 6).tolist(),
             tr("figures.col_recorded"): np.round(recorded[t], 6).tolist()} for t in range(len(ids))]


# ---------------------------------------------------------------------------------------------------
# Vocabulary-wide vectors: top-N, distribution, search
# ---------------------------------------------------------------------------------------------------


def top_tokens(probs: np.ndarray, labels: list[str] | None, k: int = 15) -> list[tuple[int, str, float]]:
    """The k most probable ids with their labels (a partial sort: fast on 151,936 entries)."""
    probs = np.asarray(probs)
    k = min(k, probs.size)
    part = np.argpartition(-probs, k - 1)[:k]
    order = part[np.lexsort((part, -probs[part]))]
    return [(int(i), labels[i] if labels and i < len(labels) else str(int(i)), float(probs[i])) for i in order]


def ranks_of(values: np.ndarray, ids: list[int]) -> list[int]:
    """1-based rank of each id in ``values`` sorted from largest (ties: lower id first)."""
    values = np.asarray(values, dtype=np.float64)
    return [int(np.sum(values > values[i]) + np.sum(values[:i] == values[i]) + 1) for i in ids]


def vocab_distribution_figure(logits: np.ndarray, probs: np.ndarray, lang: str = "en", bins: int = 80) -> Any:
    """A vector over the whole vocabulary in two panels: probabilities sorted from largest, by rank on log
    axes (sampled at log-spaced ranks), and a histogram of the logits with a log count axis."""
    go = _go()
    from plotly.subplots import make_subplots

    tr = translator(lang)
    logits = np.asarray(logits, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    ordered = np.sort(probs)[::-1]
    ranks = np.unique(np.geomspace(1, len(ordered), num=min(300, len(ordered))).astype(int))
    positive = ordered[ranks - 1] > 0
    finite = logits[logits > MASKED_BELOW]
    counts, edges = np.histogram(finite, bins=bins)
    fig = make_subplots(rows=1, cols=2, subplot_titles=[tr("figures.sorted_probs"), tr("figures.logit_hist")])
    fig.add_trace(go.Scatter(x=ranks[positive], y=ordered[ranks - 1][positive], mode="lines+markers",
                             marker=dict(size=3), name=tr("figures.sorted_probs")), row=1, col=1)
    fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=np.maximum(counts, 0), width=np.diff(edges),
                         name=tr("figures.logit_hist")), row=1, col=2)
    fig.update_xaxes(type="log", title_text=tr("figures.rank_axis"), row=1, col=1)
    fig.update_yaxes(type="log", title_text=tr("figures.prob_axis"), row=1, col=1)
    fig.update_xaxes(title_text=tr("figures.logit_axis"), row=1, col=2)
    fig.update_yaxes(type="log", title_text=tr("figures.count_axis"), row=1, col=2)
    masked = int(np.sum(logits <= MASKED_BELOW))
    return _layout(fig, tr("figures.vocab_title", n=len(logits), masked=masked), 380, showlegend=False)


def sampling_figure(logits: np.ndarray, temperature: float, top_k: int | None, top_p: float | None,
                    labels: list[str] | Callable[[list[int]], list[str]] | None = None, k: int = 15,
                    lang: str = "en") -> tuple[Any, np.ndarray]:
    """Next-token probabilities for other sampling settings, computed on the recorded logits; the ``k``
    most likely tokens as bars labelled with their text (``labels``: a vocabulary list, or a function from
    ids to their text such as ``TokenText.labels``)."""
    go = _go()
    tr = translator(lang)
    logits = np.asarray(logits, dtype=np.float64)
    probs = ops.greedy_probs(logits) if temperature == 0 else ops.sampling_probs(logits, temperature, top_k, top_p)
    base = ops.softmax(logits)
    rows = top_tokens(base, labels if not callable(labels) else None, k)
    if callable(labels):
        rows = [(i, label, p) for (i, _, p), label in zip(rows, labels([i for i, _, _ in rows]))]
    names = [f"{i}:{label}" for i, label, _ in rows]
    fig = go.Figure([go.Bar(x=names, y=[p for *_, p in rows], name=tr("figures.softmax_t1"), opacity=0.45),
                     go.Bar(x=names, y=[float(probs[i]) for i, *_ in rows], name=tr("figures.after_sampling"))])
    off = tr("figures.off")
    _layout(fig, tr("figures.sampling_title", t=f"{temperature:g}", k=top_k or off, p=top_p or off), 380,
            barmode="overlay", yaxis_title=tr("figures.prob_axis"))
    fig.update_xaxes(type="category")
    return fig, probs


# ---------------------------------------------------------------------------------------------------
# Pipeline map
# ---------------------------------------------------------------------------------------------------

STAGES = ["attn_norm", "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.q_norm", "attn.k_norm", "attn.q_rope",
          "attn.k_rope", "attn.scores", "attn.mask", "attn.masked_scores", "attn.probs", "attn.context",
          "attn.o_proj", "resid_mid", "mlp_norm", "mlp.gate_proj", "mlp.up_proj", "mlp.act", "mlp.down_proj",
          "moe.router_logits", "moe.router_probs", "moe.topk_ids", "moe.topk_weights", "moe.gates", "moe.experts",
          "moe.out", "resid_post"]
OUTER = ["tokens", "embed.onehot", "embed.out", "rope.cos", "rope.sin", "final_norm", "logits", "sample.0.logits",
         "sample.0.masked_logits", "sample.0.probs", "sample.0.token_id"]


def pipeline_stage(name: str) -> tuple[int | None, str]:
    """(layer, stage) of a prompt record: ``layers.3.attn.q_proj`` -> (3, "attn.q_proj"); experts collapse
    into one stage ``moe.experts``; records outside the blocks have layer None."""
    parts = name.split(".")
    if parts[0] != "layers":
        return None, name
    stage = ".".join(parts[2:])
    if stage.startswith("moe.experts."):
        stage = "moe.experts"
    return int(parts[1]), stage


def _edges(trace: Trace, positions: dict[str, tuple[float, float]]) -> tuple[list[float | None], list[float | None]]:
    """Line segments from each record to the records it was computed from (x, y lists broken by None)."""
    edge_x: list[float | None] = []
    edge_y: list[float | None] = []
    for name, (x, y) in positions.items():
        for src in trace.info[name]["inputs"]:
            if src in positions:
                edge_x += [positions[src][0], x, None]
                edge_y += [positions[src][1], y, None]
    return edge_x, edge_y


def whole_pass_figure(trace: Trace, max_layers: int = 94, lang: str = "en") -> Any:
    """The data flow of the whole prompt pass in one map, drawn from the ``inputs`` of every record.

    One column per stage (in computation order), one row per layer (row 0: tokens and embedding; last row:
    final norm, logits, sampling); an expert's records sit within its layer's row; a Qwen3-VL vision tower in
    rows above the embedding. Edges are the inputs.
    """
    go = _go()
    tr = translator(lang)
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
    edge_x, edge_y = _edges(trace, positions)
    xs, ys = zip(*positions.values())
    fig = go.Figure([
        go.Scatter(x=edge_x, y=edge_y, mode="lines", line=dict(width=0.6, color="#bbb"), hoverinfo="skip"),
        go.Scatter(x=xs, y=ys, mode="markers", marker=dict(size=9, color=xs, colorscale="Turbo"),
                   customdata=list(positions), hovertemplate="%{customdata}<extra></extra>"),
    ])
    return _layout(fig, tr("figures.pipeline_whole"), max(400, 22 * layers + 160), showlegend=False,
                   xaxis=dict(visible=False), yaxis=dict(title=tr("figures.pipeline_whole_axis"), autorange="reversed"))


def pipeline_figure(trace: Trace, layers: list[int] | None = None, lang: str = "en") -> Any:
    """One group of layers of the prompt's forward pass as a grid: a row per layer, a column per stage in
    computation order, an edge for every input. ``layers=[]`` draws the records outside the blocks (tokens,
    embedding, final norm, LM head, sampling); ``layers=None`` the whole pass in one map (``whole_pass_figure``).
    Click a node to open it (its record name is the customdata)."""
    if layers is None:
        return whole_pass_figure(trace, lang=lang)
    go = _go()
    tr = translator(lang)
    wanted = set(layers)
    positions: dict[str, tuple[float, float]] = {}
    present_stages: list[str] = []
    if wanted == set():
        outer = [n for n in OUTER if n in trace]
        for k, name in enumerate(outer):
            positions[name] = (float(k), 0.0)
        ticks = outer
    else:
        expert_rank: dict[str, int] = {}
        for name in trace.names:
            layer, stage = pipeline_stage(name)
            if layer is None or name.startswith(("decode.", "sample.")) or (wanted is not None and layer not in wanted):
                continue
            if stage not in present_stages:
                present_stages.append(stage)
            y = float(layer)
            if stage == "moe.experts":
                key = f"{layer}.{name.split('.')[4]}"
                expert_rank.setdefault(key, len([k for k in expert_rank if k.startswith(f"{layer}.")]))
                y += 0.6 * expert_rank[key] / max(1, trace.meta["config"].get("num_experts") or 1)
            positions[name] = (STAGES.index(stage) if stage in STAGES else len(STAGES), y)
        columns = sorted({x for x, _ in positions.values()})
        remap = {x: k for k, x in enumerate(columns)}
        positions = {n: (float(remap[x]), y) for n, (x, y) in positions.items()}
        ticks = [s for s in STAGES if s in present_stages]
    edge_x, edge_y = _edges(trace, positions)
    xs, ys = (list(v) for v in zip(*positions.values())) if positions else ([], [])
    fig = go.Figure([
        go.Scatter(x=edge_x, y=edge_y, mode="lines", line=dict(width=0.7, color="#bbb"), hoverinfo="skip"),
        go.Scatter(x=xs, y=ys, mode="markers", marker=dict(size=11, color=xs, colorscale="Turbo"),
                   customdata=list(positions), hovertemplate="%{customdata}<extra></extra>"),
    ])
    rows = sorted({int(y) for y in ys}) if wanted != set() else []
    title = tr("figures.pipeline_outer") if wanted == set() else \
        tr("figures.pipeline_layers", first=min(rows) if rows else 0, last=max(rows) if rows else 0)
    _layout(fig, title, max(220, 36 * len(rows) + 200), showlegend=False)
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(ticks))), ticktext=ticks, tickangle=-45)
    fig.update_yaxes(tickmode="array", tickvals=rows, ticktext=[tr("figures.layer_n", i=r) for r in rows],
                     autorange="reversed", visible=wanted != set())
    return fig


# ---------------------------------------------------------------------------------------------------
# Comparing two traces
# ---------------------------------------------------------------------------------------------------


def compare_figure(rows: list[Row], lang: str = "en") -> Any:
    """Max relative error of every common record, in computation order (log scale)."""
    go = _go()
    tr = translator(lang)
    common = [r for r in rows if r.max_rel is not None]
    colors = ["#2a9d8f" if r.verdict == "OK" else "#e63946" for r in common]
    fig = go.Figure(go.Bar(x=[r.name for r in common], y=[max(r.max_rel, 1e-12) if math.isfinite(r.max_rel) else 1.0
                                                            for r in common], marker_color=colors))
    _layout(fig, tr("figures.compare_title"), 380, yaxis_type="log", yaxis_title=tr("figures.max_rel_axis"),
            xaxis=dict(showticklabels=len(common) <= 60))
    return fig


def error_growth_figure(rows: list[Row], lang: str = "en") -> Any:
    """How the difference between two traces grows through the layers: the max relative error of each
    block's attention output, MLP / MoE output and block output, by layer (prompt records)."""
    go = _go()
    tr = translator(lang)
    series: dict[str, dict[int, float]] = {"attn.o_proj": {}, "resid_mid": {}, "resid_post": {}}
    for r in rows:
        layer, stage = pipeline_stage(r.name)
        if layer is None or r.max_rel is None or r.name.startswith("decode."):
            continue
        if stage in series:
            series[stage][layer] = max(r.max_rel, 1e-16) if math.isfinite(r.max_rel) else 1.0
    fig = go.Figure([go.Scatter(x=sorted(v), y=[v[k] for k in sorted(v)], mode="lines+markers", name=s)
                     for s, v in series.items() if v])
    return _layout(fig, tr("figures.growth_title"), 360, yaxis_type="log", xaxis_title=tr("figures.layer_axis"),
                   yaxis_title=tr("figures.max_rel_axis"))


def difference_heatmap(a: np.ndarray, b: np.ndarray, rows: list[str] | None, cols: list[str] | None, name: str,
                       lang: str = "en") -> Any:
    """A − B of one record (one head of a per-head record), cell by cell; masked cells in both stay grey."""
    tr = translator(lang)
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    both = (x < MASKED_BELOW) & (y < MASKED_BELOW)
    diff = np.where(both, -np.inf, np.where(x < MASKED_BELOW, 0, x) - np.where(y < MASKED_BELOW, 0, y))
    return heatmap(diff, rows, cols, tr("figures.diff_title", name=name), decimals=2, lang=lang)


def residual_norms_figure(trace: Trace, lang: str = "en") -> Any:
    """RMS of the last token's residual stream after every block: how it grows through the layers."""
    go = _go()
    tr = translator(lang)
    layers = trace.meta["config"]["num_hidden_layers"]
    rms = [float(np.sqrt(np.mean(np.asarray(trace[f"layers.{i}.resid_post"], dtype=np.float64)[-1] ** 2)))
           for i in range(layers) if f"layers.{i}.resid_post" in trace]
    fig = go.Figure(go.Scatter(x=list(range(len(rms))), y=rms, mode="lines+markers"))
    return _layout(fig, tr("figures.resid_title"), 340, xaxis_title=tr("figures.layer_axis"), yaxis_title="RMS")
