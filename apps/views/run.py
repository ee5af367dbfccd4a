"""Run a model on a prompt with every option of ``tracer trace``, or open a saved trace."""

import streamlit as st

import guard
from common import header, open_path, open_trace, read_upload, require_trace, show_notes, summary, t
from tracer import TracerError
from tracer.commands.run import BACKENDS, chat_prompt, encode_prompt, load_model, parse_token_list, run_trace
from tracer.engine.model import Sampling
from tracer.sources.presets import PRESETS

DTYPES = ["float32", "float64", "bfloat16", "float16"]

header("nav_run")
current = require_trace()
summary(current)
show_notes(current, "run")

run_tab, open_tab = st.tabs([t("run_tab"), t("open_tab")])
with run_tab:
    left, right = st.columns(2)
    preset = left.selectbox(t("model"), list(PRESETS), index=0, key="run_model")
    directory = left.text_input(t("checkpoint_dir"), "", key="run_checkpoint_dir")
    backend = left.radio(t("backend"), list(BACKENDS), horizontal=True, help=t("backend_help"))
    dtype = left.selectbox(t("dtype"), DTYPES, index=0, help=t("dtype_help"))
    overrides = left.text_input(t("overrides"), "", help=t("overrides_help"))
    seed = int(left.number_input(t("seed"), 0, 2**31 - 1, 0, help=t("seed_help")))
    rounding = int(left.number_input(t("round"), -1, 12, -1, help=t("round_help")))
    prompt = right.text_area(t("prompt"), "明天交報告")
    token_ids = right.text_input(t("token_ids"), "", key="run_token_ids")
    chat = right.checkbox(t("chat"), value=False)
    system = right.text_input(t("system"), "", disabled=not chat)
    thinking = right.toggle(t("thinking"), value=True, disabled=not chat)
    suppress = right.text_input(t("suppress"), "", help=t("suppress_help"))
    a, b, c, d = st.columns(4)
    max_new = a.number_input(t("max_new"), 1, 64, 1)
    temperature = b.slider(t("temperature"), 0.0, 2.0, 0.0, 0.05, help=t("temperature_help"))
    top_k = c.number_input(t("top_k"), 0, 1000, 0)
    top_p = d.slider(t("top_p"), 0.05, 1.0, 1.0, 0.05)
    capture = st.text_input(t("capture"), "", help=t("capture_help"))
    if st.button(t("run"), type="primary", key="run_button"):
        try:
            if backend == "numpy" and dtype not in ("float32", "float64"):
                raise TracerError.of("app.dtype_numpy", dtype=dtype)
            source = str(guard.trace_path(directory, "checkpoint folder")) if directory.strip() else preset
            model = load_model(source, [o.strip() for o in overrides.split(",") if o.strip()],
                               seed, dtype if dtype in ("float32", "float64") else "float32")
            if token_ids.strip():
                ids = parse_token_list(token_ids, model)
                text = None
            else:
                if chat and model.toy_vocab:
                    raise TracerError.of("app.chat_toy", model=model.name)
                text = chat_prompt(model, prompt, system.strip() or None, thinking) if chat else prompt
                ids = encode_prompt(model, text)
            suppressed = tuple(parse_token_list(suppress, model)) if suppress.strip() else model.suppress_tokens
            bar = st.progress(0.0, text=t("tracing"))
            total = model.cfg.num_hidden_layers * max_new

            def progress(name: str, done: list[int] = [0]) -> None:  # noqa: B006 - a counter across calls
                if name.endswith("resid_post"):
                    done[0] += 1
                    bar.progress(min(1.0, done[0] / total), text=f"{name}")

            sampling = Sampling(temperature, top_k or None, top_p if top_p < 1 else None, suppressed, seed)
            globs = [g.strip() for g in capture.split(",") if g.strip()] or None
            guard.check_run(model.cfg, len(ids), int(max_new), globs, backend)
            stop = st.empty()
            stop.button(t("cancel"), key="cancel_run")  # any click reruns the page, which stops this run
            try:
                with guard.run_slot():  # a bounded pool shared by every session: wait for a free worker
                    trace = run_trace(model, ids, sampling=sampling, max_new_tokens=int(max_new), prompt=text,
                                      round_decimals=None if rounding < 0 else rounding, capture=globs,
                                      backend=backend, torch_dtype=dtype, listener=progress)
            finally:
                stop.empty()
            bar.empty()
            open_trace(trace)
            st.rerun()
        except TracerError as exc:
            st.error(guard.error_text(exc))

with open_tab:
    uploaded = st.file_uploader(t("upload"), type=["npz"], max_upload_size=guard.settings().max_upload_mb)
    if uploaded is not None and st.session_state.get("uploaded_name") != uploaded.name + str(uploaded.size):
        st.session_state.uploaded_name = uploaded.name + str(uploaded.size)
        try:
            open_trace(read_upload(uploaded))
            st.rerun()
        except TracerError as exc:
            st.error(guard.error_text(exc))
    typed = st.text_input(t("local_path"), key="open_path", help=", ".join(guard.trace_files()[:50]) or None)
    if st.button(t("open"), key="open_button") and typed.strip():
        if open_path(typed.strip()):
            st.rerun()
