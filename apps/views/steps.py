"""Previous / next through every record in computation order, the way seed 004 walks through its matrices:
inputs, parameters (as the checkpoint names them), output, and any one cell redone by hand."""

import numpy as np
import streamlit as st

import guard
from common import header, lang, matrix_table, require_trace, show_notes, t, vocab_view, zoomable_heatmap
from tracer import TracerError
from tracer.figures.forward import labels_for
from tracer.teaching.worked import WORKERS, Params, parameters, work_cell
from tracer.traces.show import explanation, formula_text

header("nav_steps")
trace = require_trace()
show_notes(trace, "steps")
names = trace.names
if "record" in st.query_params and st.query_params["record"] in names and "step_from_url" not in st.session_state:
    st.session_state.step = names.index(st.query_params["record"])
    st.session_state.step_from_url = True


def _move(by: int) -> None:
    st.session_state.step = max(0, min(int(st.session_state.get("step", 0)) + by, len(names) - 1))


def _picked() -> None:
    st.session_state.step = st.session_state.steps_record


step = max(0, min(int(st.session_state.get("step", 0)), len(names) - 1))
prev_col, pick_col, next_col = st.columns([1, 6, 1])
prev_col.button(t("previous"), disabled=step == 0, on_click=_move, args=(-1,), key="steps_previous")
next_col.button(t("next_step"), disabled=step == len(names) - 1, on_click=_move, args=(1,), key="steps_next")
st.session_state.steps_record = step  # a keyed widget keeps its own value: follow Previous / Next / the pipeline map
step = pick_col.selectbox(t("record"), range(len(names)), format_func=lambda k: f"{k + 1}. {names[k]}",
                          key="steps_record", on_change=_picked)
st.session_state.step = step

name = names[step]
info = trace.info[name]
value = np.asarray(trace[name])
vocab_size = int(trace.meta["config"]["vocab_size"])
st.subheader(name)
st.latex(guard.formula(info, lang()))  # the schema's LaTeX of the op, words in the page's language; never the file's
if lang() != "en" and formula_text(info, lang()) != info["formula_text"]:
    st.caption(guard.plain(formula_text(info, lang())))  # the formula's words in the page's language
st.caption(guard.plain(f"{t('shape')}: {list(value.shape)} = {info['schema_shape']} · {info['dtype']}")
           + (f" · {t('derived')}" if info.get("derived") else ""))
st.info(explanation(name, lang()))

params = Params(trace.meta)
weights = parameters(trace, name, params)
records = [n for n in info["inputs"] if n not in {w for w, _ in weights}]
left, right = st.columns(2)
with left:
    st.markdown(f"**{t('inputs')}**")
    st.text("\n".join(f"• {guard.plain(n)} {list(np.shape(trace[n])) if n in trace else ''}" for n in records) or "—")
with right:
    st.markdown(f"**{t('parameters')}**")
    if weights:
        st.markdown("\n".join(f"- `{w}` · {t('stored_shape')} {list(s)} · {t('seed_shape')} {list(s[::-1])}"
                              for w, s in weights))
        st.caption(t("orientation"))
    else:
        st.markdown("—")
for w, shape in weights:
    if len(shape) == 2 and shape[0] * shape[1] <= 64:
        st.caption(t("param_as_seed", name=w))
        full = np.stack([params.row(w, i) for i in range(shape[0])])
        matrix_table(full.T, None, None)

st.markdown(f"**{t('output')}**")
labels = labels_for(trace, name)
matrix, head = value, 0
if value.ndim == 3:
    head = st.slider(t("head"), 0, value.shape[0] - 1, 0) if value.shape[0] > 1 else 0
    matrix, labels = value[head], labels[1:]
if value.ndim == 0:
    st.metric(name, str(value.item()))
elif value.shape[-1] == vocab_size and vocab_size > 4096:
    vocab_view(trace, name, key="steps")
elif matrix.ndim <= 2 and all(d <= 16 for d in matrix.shape):
    rows = labels[0] if matrix.ndim == 2 else None
    cols = labels[1] if matrix.ndim == 2 else labels[0]
    matrix_table(matrix, rows, cols)
else:
    zoomable_heatmap(matrix, labels[0] if matrix.ndim == 2 else None, labels[-1],
                     f"{name} [{t('head')} {head}]" if value.ndim == 3 else name, key=f"heat-{name}")

st.markdown(f"**{t('by_hand')}**")
st.caption(t("by_hand_help"))
index: list[int] = []
if value.ndim:
    axes = st.columns(value.ndim)
    for axis, size in enumerate(value.shape):
        if value.ndim == 3 and axis == 0:
            index.append(int(head))
            axes[axis].metric(t("head"), head)
            continue
        default = int(np.argmax(value)) if value.ndim == 1 and size > 4096 else 0
        index.append(int(axes[axis].number_input(t("axis_n", n=axis), 0, size - 1, default, key=f"cell-{axis}")))
if info["op"] not in WORKERS:
    st.info(t("no_worked", op=info["op"]))
    st.stop()
try:
    worked = work_cell(trace, name, tuple(index), params, lang())
    st.code("\n".join(worked.lines), language=None)
    same = np.isclose(worked.value, worked.recorded, rtol=1e-4, atol=1e-5) or min(worked.value, worked.recorded) < -1e30
    st.caption(t("recorded_value", v=f"{worked.recorded:.6g}") + (" ✓" if same else " ✗"))
except TracerError as exc:
    st.error(guard.error_text(exc))
