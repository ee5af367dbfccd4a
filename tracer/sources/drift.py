"""How far a quantized model's run drifts from its reference, layer by layer (explorer and notebook)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tracer.i18n import t

QUANT_COLUMNS = (("weight", "col_weight"), ("max_abs", "col_max_abs"), ("mean_abs", "col_mean_abs"),
                 ("rel_frobenius", "col_rel_frobenius"), ("bits_per_weight", "col_bits"))
"""Each field of a ``quant_rows`` row and the ``sources`` catalog key of its column header."""


def stages(trace: Any) -> list[str]:
    """The residual stream after each layer, then the logits: the checkpoints of a forward pass."""
    layers = int(trace.meta["config"]["num_hidden_layers"])
    return [f"layers.{i}.resid_post" for i in range(layers)] + ["logits"]


def layer_drift(reference: Any, other: Any) -> list[dict[str, Any]]:
    """Relative error ‖B − A‖_F / ‖A‖_F of ``other`` (B) against ``reference`` (A) at every stage both hold."""
    rows = []
    for name in stages(reference):
        if name not in reference.names or name not in other.names:
            continue
        a, b = np.asarray(reference[name], np.float64), np.asarray(other[name], np.float64)
        if a.shape != b.shape:
            continue
        norm = float(np.linalg.norm(a))
        rows.append({"stage": name, "rel_error": float(np.linalg.norm(b - a)) / norm if norm else 0.0})
    return rows


def quant_rows(trace: Any) -> list[dict[str, Any]]:
    """The ``quant.{w}.error`` records of a trace as table rows."""
    rows = []
    for name in trace.names:
        if name.startswith("quant.") and name.endswith(".error"):
            max_abs, mean_abs, rel, bits = (float(v) for v in trace[name])
            rows.append({"weight": name[len("quant."):-len(".error")], "max_abs": max_abs, "mean_abs": mean_abs,
                         "rel_frobenius": rel, "bits_per_weight": bits})
    return rows


def drift_table(curves: dict[str, list[dict[str, Any]]], lang: str = "en") -> list[dict[str, Any]]:
    """The rows of ``layer_drift`` for every run, one table, its column headers in ``lang``."""
    trace, stage, error = (t(f"sources.{key}", lang) for key in ("col_trace", "col_stage", "col_rel_error"))
    return [{trace: label, stage: row["stage"], error: row["rel_error"]} for label, rows in curves.items()
            for row in rows]


def quant_table(rows: list[dict[str, Any]], lang: str = "en") -> list[dict[str, Any]]:
    """The rows of ``quant_rows`` with their column headers in ``lang``."""
    headers = {field: t(f"sources.{key}", lang) for field, key in QUANT_COLUMNS}
    return [{headers[field]: value for field, value in row.items()} for row in rows]


def drift_figure(curves: dict[str, list[dict[str, Any]]], lang: str = "en") -> Any:
    """One line per quantized run: relative error at each stage, on a log axis; its texts in ``lang``."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, rows in curves.items():
        fig.add_trace(go.Scatter(x=[r["stage"] for r in rows], y=[r["rel_error"] for r in rows],
                                 mode="lines+markers", name=label, hovertemplate=t("sources.drift_hover", lang)))
    fig.update_layout(title=t("sources.app_title", lang), xaxis_title=t("sources.drift_axis_stage", lang),
                      yaxis_title=t("sources.drift_axis_error", lang), yaxis_type="log", height=420,
                      margin=dict(l=40, r=20, t=50, b=40))
    return fig
