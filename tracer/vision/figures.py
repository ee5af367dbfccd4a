"""Plotly figures of a Qwen3-VL trace, shared by the explorer's Vision page and notebook 09.

They read records (the resized image, grids, attention probabilities, position ids); the only arithmetic is
reordering patches from merge-block order back to the image's raster order, and norms for display.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracer.figures.forward import _go
from tracer.i18n import t
from tracer.traces.tracefile import Trace
from tracer.vision import ops as vops


def image_info(trace: Trace, k: int) -> tuple[int, int, int, int]:
    """(first patch row, gh, gw, merge) of image k in a trace."""
    vc = trace.meta["vision"]["config"]
    grids = trace.meta["vision"]["grid_thw"]
    start = sum(f * h * w for f, h, w in grids[:k])
    _, gh, gw = grids[k]
    return start, gh, gw, vc["spatial_merge_size"]


def to_raster(values: np.ndarray, gh: int, gw: int, merge: int) -> np.ndarray:
    """[gh·gw] values in merge-block order -> [gh, gw] on the image's patch grid."""
    out = np.zeros((gh, gw), dtype=np.asarray(values).dtype)
    coords = vops.patch_coords(gh, gw, merge)
    out[coords[:, 0], coords[:, 1]] = values
    return out


def _image_trace(trace: Trace, k: int, lang: str) -> Any:
    """The resized image k, its hover text (pixel row, column and colour) in ``lang``."""
    go = _go()
    return go.Image(z=np.asarray(trace[f"vision.images.{k}.resized"]), hovertemplate=t("vision.hover_pixel", lang))


def patch_grid_figure(trace: Trace, k: int, lang: str = "en") -> Any:
    """The resized image with its patch grid (thin lines) and the 2×2 merge blocks (thick lines)."""
    go = _go()
    vc = trace.meta["vision"]["config"]
    p, m = vc["patch_size"], vc["spatial_merge_size"]
    h, w = trace.meta["vision"]["resized"][k]
    fig = go.Figure(_image_trace(trace, k, lang))
    for x in range(0, w + 1, p):
        fig.add_shape(type="line", x0=x - 0.5, x1=x - 0.5, y0=-0.5, y1=h - 0.5,
                      line=dict(color="white", width=3 if x % (p * m) == 0 else 0.7))
    for y in range(0, h + 1, p):
        fig.add_shape(type="line", x0=-0.5, x1=w - 0.5, y0=y - 0.5, y1=y - 0.5,
                      line=dict(color="white", width=3 if y % (p * m) == 0 else 0.7))
    fig.update_layout(title=t("vision.fig_grid", lang, h=h, w=w, gh=h // p, gw=w // p, tokens=h * w // (p * m) ** 2),
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def token_map_figure(trace: Trace, k: int, lang: str = "en") -> Any:
    """Which language-model token each patch merges into (patch grid coloured by token index)."""
    go = _go()
    start, gh, gw, m = image_info(trace, k)
    token = np.arange(gh * gw) // (m * m)
    grid = to_raster(token, gh, gw, m)
    order = to_raster(np.arange(gh * gw), gh, gw, m)
    text = np.vectorize(lambda tk, row: f"t{tk}<br>p{row}")(grid, order)
    fig = go.Figure(go.Heatmap(z=grid, text=text, texttemplate="%{text}" if gh * gw <= 400 else None,
                               customdata=order, hovertemplate=t("vision.hover_token_map", lang),
                               colorscale="Turbo", showscale=False))
    fig.update_layout(title=t("vision.fig_tokens", lang), yaxis_autorange="reversed",
                      xaxis_title=t("vision.axis_patch_col", lang), yaxis_title=t("vision.axis_patch_row", lang),
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def patch_attention_figure(trace: Trace, k: int, block: int, head: int, query: int, lang: str = "en") -> Any:
    """Attention of one query patch of image k over the patches of its image, on the image."""
    go = _go()
    start, gh, gw, m = image_info(trace, k)
    vc = trace.meta["vision"]["config"]
    p = vc["patch_size"]
    probs = np.asarray(trace[f"vision.blocks.{block}.attn.probs"])[head, start + query, start:start + gh * gw]
    grid = to_raster(probs, gh, gw, m)
    fig = go.Figure(_image_trace(trace, k, lang))
    fig.add_trace(go.Heatmap(z=np.kron(grid, np.ones((p, p))), opacity=0.6, colorscale="Inferno",
                             hovertemplate=t("vision.hover_attention", lang),
                             colorbar=dict(title=dict(text=t("vision.colorbar_attention", lang)))))
    windowed = "vision.window_ids" in trace and block not in vc.get("fullatt_block_indexes", [])
    if windowed:  # Qwen2.5-VL-style window borders
        step = vc["window_size"]
        for x in range(0, gw * p + 1, step):
            fig.add_shape(type="line", x0=x - 0.5, x1=x - 0.5, y0=-0.5, y1=gh * p - 0.5,
                          line=dict(color="yellow", width=2, dash="dash"))
        for y in range(0, gh * p + 1, step):
            fig.add_shape(type="line", x0=-0.5, x1=gw * p - 0.5, y0=y - 0.5, y1=y - 0.5,
                          line=dict(color="yellow", width=2, dash="dash"))
    r, c = vops.patch_coords(gh, gw, m)[query]
    fig.add_shape(type="rect", x0=c * p - 0.5, x1=(c + 1) * p - 0.5, y0=r * p - 0.5, y1=(r + 1) * p - 0.5,
                  line=dict(color="cyan", width=3))
    fig.update_layout(title=t("vision.fig_attention", lang, block=block, head=head, row=r, col=c),
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def mrope_figure(trace: Trace, lang: str = "en") -> Any:
    """Each token's M-RoPE (t, h, w) ids: one row per axis, one column per token."""
    go = _go()
    pos = np.asarray(trace["rope.position_ids"])
    labels = [f"{i}:{s}" for i, s in enumerate(trace.meta["token_labels"])]
    fig = go.Figure(go.Heatmap(z=pos, x=labels, y=["t", "h", "w"], text=pos,
                               texttemplate="%{text}" if pos.size <= 600 else None, colorscale="Viridis",
                               hovertemplate=t("vision.hover_mrope", lang)))
    fig.update_layout(title=t("vision.fig_mrope", lang), xaxis_title=t("vision.axis_token", lang),
                      yaxis_title=t("vision.axis_mrope", lang), margin=dict(l=10, r=10, t=40, b=10), height=300)
    fig.update_xaxes(type="category")
    return fig


def deepstack_figure(trace: Trace, lang: str = "en") -> Any:
    """Size of the DeepStack addition per decoder layer: ‖added‖ over ‖hidden state‖ at the image rows."""
    go = _go()
    ids = np.asarray(trace.meta["token_ids"])
    image_rows = ids == trace.meta["vision"]["config"]["image_token_id"]
    layers, ratios = [], []
    for i in range(int(trace.meta["config"]["num_hidden_layers"])):
        name = f"layers.{i}.deepstack"
        if name not in trace or not image_rows.any():
            continue
        before = np.asarray(trace[f"layers.{i}.resid_post"])[image_rows]
        added = np.asarray(trace[name])[image_rows] - before
        layers.append(t("vision.layer_label", lang, layer=i))
        ratios.append(float(np.linalg.norm(added) / max(np.linalg.norm(before), 1e-30)))
    fig = go.Figure(go.Bar(x=layers, y=ratios, hovertemplate=t("vision.hover_deepstack", lang)))
    fig.update_layout(title=t("vision.fig_deepstack", lang), xaxis_title=t("vision.axis_decoder_layer", lang),
                      yaxis_title=t("vision.axis_deepstack", lang), margin=dict(l=10, r=10, t=40, b=10), height=320)
    return fig


def mrope_grid_figure(trace: Trace, lang: str = "en") -> Any:
    """Every token placed at its (w, h) M-RoPE ids: text runs along the diagonal, each image is a small grid
    beside it; colour is the t id."""
    go = _go()
    pos = np.asarray(trace["rope.position_ids"])
    ids = np.asarray(trace.meta["token_ids"])
    image = ids == trace.meta["vision"]["config"]["image_token_id"]
    labels = [f"{i}: {s} (t={a}, h={b}, w={c})" for i, (s, a, b, c) in
              enumerate(zip(trace.meta["token_labels"], pos[0], pos[1], pos[2]))]
    fig = go.Figure()
    for kind, rows, symbol in (("text", ~image, "circle"), ("image", image, "square")):
        fig.add_trace(go.Scatter(
            x=pos[2][rows], y=pos[1][rows], mode="markers", name=t(f"vision.legend_{kind}", lang),
            text=[labels[i] for i in np.flatnonzero(rows)],
            hovertemplate="%{text}<extra></extra>",
            marker=dict(symbol=symbol, size=12, color=pos[0][rows], colorscale="Viridis", cmin=int(pos[0].min()),
                        cmax=int(pos[0].max()), line=dict(width=1, color="black"))))
    fig.update_layout(title=t("vision.fig_mrope_grid", lang), xaxis_title="w", yaxis_title="h",
                      yaxis_autorange="reversed", margin=dict(l=10, r=10, t=40, b=10), height=420)
    return fig
