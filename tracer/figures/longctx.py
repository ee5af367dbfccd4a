"""Figures and tables of long context, shared by the explorer's "Long context" page and notebook 11.

Every number comes from ``tracer.engine.ops`` (RoPE, masks), ``tracer.engine.longctx`` (scaling) and ``tracer.engine.memory``; the page
only draws what these functions return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tracer.engine import ops
from tracer.engine.longctx import context_limit, original_window, rope_frequencies
from tracer.engine.memory import DTYPE_BYTES, memory
from tracer.figures.forward import _go
from tracer.i18n import t
from tracer.sources.config import Qwen3Config


@dataclass(frozen=True)
class PairRow:
    """One frequency pair j: its wavelength 2π/ω_j before and after scaling, and YaRN's region."""

    pair: int
    wavelength: float
    scaled_wavelength: float
    turns_in_window: float
    ramp: float
    region: str  # extrapolated (kept), ramp (blended), interpolated (divided by factor)


def pair_table(cfg: Qwen3Config, seq_len: int | None = None) -> list[PairRow]:
    """Every pair's wavelength, default and with the config's RoPE scaling, against the original window L₀.

    ``ramp`` is how far the pair moved towards ω/factor: 0 kept, 1 fully interpolated — YaRN's r_j for yarn,
    otherwise measured as ln(ω/ω')/ln(factor) (dynamic NTK at ``seq_len``, default the longest allowed context).
    """
    default, _ = rope_frequencies(cfg.replace(rope_scaling=None), 1)
    scaled, _ = rope_frequencies(cfg, seq_len or context_limit(cfg))
    window = original_window(cfg)
    s = cfg.rope_scaling
    if s is not None and s.rope_type == "yarn":
        assert s.original_max_position_embeddings is not None
        low, high = ops.yarn_correction_range(cfg.head_dim, cfg.rope_theta, s.original_max_position_embeddings,
                                              s.beta_fast or 32.0, s.beta_slow or 1.0, s.truncate is not False)
        ramps = ops.yarn_ramp(low, high, cfg.head_dim // 2)
    elif s is not None and s.factor > 1:
        ramps = np.clip(np.log(default / scaled) / np.log(s.factor), 0, 1)
    else:
        ramps = np.zeros_like(default)
    rows = []
    for j, (w0, w1, ramp) in enumerate(zip(default, scaled, ramps)):
        ramp = float(ramp)
        region = "extrapolated" if ramp < 1e-9 else "interpolated" if ramp > 1 - 1e-9 else "ramp"
        rows.append(PairRow(j, float(2 * np.pi / w0), float(2 * np.pi / w1), float(window * w0 / (2 * np.pi)),
                            ramp, region))
    return rows


REGION_COLOURS = {"extrapolated": "#2a9d8f", "ramp": "#e9c46a", "interpolated": "#e76f51"}


def wavelength_figure(cfg: Qwen3Config, lang: str = "en") -> Any:
    """Wavelength (tokens per full turn) of every pair, default and scaled, log scale, with the original window
    and YaRN's three regions as coloured markers."""
    go = _go()
    rows = pair_table(cfg)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[r.pair for r in rows], y=[r.wavelength for r in rows], mode="lines",
                             name=t("longctx.fig_default", lang), line=dict(color="#888")))
    for region, colour in REGION_COLOURS.items():
        chosen = [r for r in rows if r.region == region]
        if chosen:
            fig.add_trace(go.Scatter(x=[r.pair for r in chosen], y=[r.scaled_wavelength for r in chosen],
                                     mode="markers", marker=dict(color=colour, size=8),
                                     name=t(f"longctx.region_{region}", lang)))
    window = original_window(cfg)
    fig.add_hline(y=window, line_dash="dash", annotation_text=t("longctx.fig_window", lang, window=f"{window:,}"))
    fig.update_layout(title=t("longctx.fig_wavelength_title", lang), xaxis_title=t("longctx.fig_pair", lang),
                      yaxis_title=t("longctx.fig_wavelength_axis", lang), yaxis_type="log",
                      margin=dict(l=10, r=10, t=40, b=10), height=420)
    return fig


def fixed_vectors(head_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The two fixed vectors of the distance figure: q = k = all ones [1, 1, Dh] (every pair contributes
    2·cos(Δ·ω_j) to q·k, so the score is a²·Σ_j 2 cos(Δ ω_j) / √Dh)."""
    ones = np.ones((1, 1, head_dim))
    return ones, ones.copy()


def distance_scores(cfg: Qwen3Config, distances: np.ndarray) -> np.ndarray:
    """[N]: the attention score of q at position Δ and k at position 0, a²·(R(Δ)q)·k/√Dh, for each Δ."""
    q, k = fixed_vectors(cfg.head_dim)
    distances = np.asarray(distances, dtype=np.int64)
    inv_freq, a = rope_frequencies(cfg, int(distances.max()) + 1)
    cos, sin = ops.rope_tables(distances, inv_freq, np.float64)
    q_rot = ops.apply_rope(np.broadcast_to(q, (1, len(distances), cfg.head_dim)), cos * a, sin * a)
    k0c, k0s = ops.rope_tables(np.array([0]), inv_freq, np.float64)
    k_rot = ops.apply_rope(k, k0c * a, k0s * a)
    return ops.attention_scores(q_rot, k_rot, cfg.head_dim ** -0.5)[0, :, 0]


def distance_figure(cfg: Qwen3Config, scaled: Qwen3Config, max_distance: int, points: int = 600,
                    lang: str = "en") -> Any:
    """Score of the two fixed vectors as their distance grows (log-spaced distances, log axis), without and with
    the RoPE scaling."""
    go = _go()
    distances = np.unique(np.geomspace(1, max(max_distance, 2), points).astype(np.int64))
    fig = go.Figure()
    for c, key in ((cfg, "fig_default"), (scaled, "fig_scaled")):
        fig.add_trace(go.Scatter(x=distances, y=distance_scores(c, distances), mode="lines",
                                 name=t(f"longctx.{key}", lang)))
    window = original_window(scaled)
    fig.add_vline(x=window, line_dash="dash", annotation_text=t("longctx.fig_window", lang, window=f"{window:,}"))
    fig.update_layout(title=t("longctx.fig_distance_title", lang), xaxis_title=t("longctx.fig_distance_axis", lang),
                      yaxis_title=t("longctx.fig_score_axis", lang), xaxis_type="log",
                      margin=dict(l=10, r=10, t=40, b=10), height=380)
    return fig


def kv_table(cfg: Qwen3Config, contexts: list[int], dtype: str = "bfloat16", batch: int = 1) -> list[dict[str, Any]]:
    """Weights, KV cache and score matrices (GiB) at each context length."""
    gib = 2 ** 30
    out = []
    for n in contexts:
        m = memory(cfg, n, dtype, batch)
        out.append({"context": n, "weights_gib": m.weights / gib, "kv_gib": m.kv_total / gib,
                    "scores_gib": m.scores_materialised / gib, "flash_gib": m.scores_flash / gib})
    return out


def kv_figure(cfg: Qwen3Config, max_context: int, dtype: str = "bfloat16", batch: int = 1, lang: str = "en") -> Any:
    """KV cache and weights (GiB) as the context grows; the cache grows linearly, the weights stay."""
    go = _go()
    contexts = sorted({max(1, int(x)) for x in np.linspace(1, max_context, 50)})
    rows = kv_table(cfg, contexts, dtype, batch)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=contexts, y=[r["kv_gib"] for r in rows], name=t("longctx.fig_kv", lang)))
    fig.add_trace(go.Scatter(x=contexts, y=[r["weights_gib"] for r in rows], name=t("longctx.fig_weights", lang),
                             line=dict(dash="dot")))
    fig.update_layout(title=t("longctx.fig_kv_title", lang, dtype=dtype, size=DTYPE_BYTES[dtype], batch=batch),
                      xaxis_title=t("longctx.fig_context_axis", lang), yaxis_title="GiB",
                      margin=dict(l=10, r=10, t=40, b=10), height=360)
    return fig


def window_mask(num_tokens: int, window: int | None) -> np.ndarray:
    """[T, T] mask of a prefill: sliding (W) or plain causal (None), −∞ as the most negative float32."""
    low = float(np.finfo(np.float32).min)
    if window is None:
        return ops.causal_mask(num_tokens, num_tokens, low)
    return ops.sliding_window_mask(num_tokens, num_tokens, window, low)


def mask_figure(mask: np.ndarray, title: str) -> Any:
    """A mask as a heatmap (queries as rows, keys as columns): coloured 0 where a query may look, grey −∞."""
    go = _go()
    visible = mask > -1e30
    n_rows, n_cols = mask.shape
    fig = go.Figure(go.Heatmap(
        z=visible.astype(float), x=[f"k{c}" for c in range(n_cols)], y=[f"q{r}" for r in range(n_rows)],
        colorscale=[[0, "#eeeeee"], [1, "#2a9d8f"]], zmin=0, zmax=1, showscale=False,
        text=np.where(visible, "0", "−∞"), texttemplate="%{text}" if mask.size <= 900 else None))
    fig.update_layout(title=title, yaxis_autorange="reversed", margin=dict(l=10, r=10, t=40, b=10),
                      height=max(260, min(600, 26 * n_rows + 120)))
    return fig


def errata(lang: str = "en") -> list[dict[str, str]]:
    """What seeds 000 and 001 say about long context, checked: claim, verdict, and the computed numbers."""
    from tracer.sources.presets import QWEN3_0_6B

    gib = 2 ** 30
    seed_freq = ops.rope_inv_freq(64, 10_000.0)
    qwen_freq = ops.rope_inv_freq(QWEN3_0_6B.head_dim, QWEN3_0_6B.rope_theta)
    longer = int(np.sum(2 * np.pi / qwen_freq > 32768))
    kv_right = memory(QWEN3_0_6B, 32768).kv_total / gib
    kv_query_heads = kv_right * QWEN3_0_6B.kv_groups
    yarn = QWEN3_0_6B.replace(max_position_embeddings=131072, rope_scaling={
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768})
    _, a = rope_frequencies(yarn, 1)
    kept = sum(r.region == "extrapolated" for r in pair_table(yarn))
    values = {
        "seed_longest": f"{2 * np.pi / seed_freq[-1]:,.0f}", "qwen_longest": f"{2 * np.pi / qwen_freq[-1]:,.0f}",
        "longer": longer, "pairs": len(qwen_freq), "kv": f"{kv_right:.2f}", "kv_wrong": f"{kv_query_heads:.2f}",
        "a": f"{a:.4f}", "a2": f"{a * a:.4f}", "kept": kept,
    }
    return [{"seed": t(f"longctx.errata_{k}_seed", lang), "claim": t(f"longctx.errata_{k}_claim", lang),
             "verdict": t(f"longctx.errata_{k}_verdict", lang, **values)}
            for k in ("context", "embedding", "freqs", "ntk", "kv")]
