"""Run a model on a prompt, or open a saved trace."""

import streamlit as st

import guard
from common import header, open_path, open_trace, read_upload, require_trace, summary
from tracer import TracerError
from tracer.model import Sampling
from tracer.presets import PRESETS
from tracer.run import chat_prompt, encode_prompt, load_model, parse_token_list, run_trace

header("Run / open", "執行 / 開啟")
summary(require_trace())

run_tab, open_tab = st.tabs(["Run a model", "Open a trace"])
with run_tab:
    left, right = st.columns(2)
    preset = left.selectbox("Model", list(PRESETS), index=0)
    directory = left.text_input("…or weights on disk: checkpoint directory, FILE.gguf, hf:ORG/NAME, ollama:NAME", "")
    backend = left.radio("Backend", ["numpy", "torch"], horizontal=True)
    overrides = left.text_input("Config overrides (KEY=VALUE, comma separated)", "",
                                help="e.g. num_hidden_layers=2 — values are JSON")
    prompt = right.text_area("Prompt", "明天交報告")
    token_ids = right.text_input("…or token ids (comma separated)", "")
    chat = right.checkbox("Wrap as a chat turn (Qwen3 template)", value=False)
    thinking = right.toggle("Thinking", value=True, disabled=not chat)
    a, b, c, d = st.columns(4)
    max_new = a.number_input("New tokens", 1, 64, 1)
    temperature = b.slider("Temperature", 0.0, 2.0, 0.0, 0.05, help="0 = greedy")
    top_k = c.number_input("Top-k (0 = off)", 0, 1000, 0)
    top_p = d.slider("Top-p", 0.05, 1.0, 1.0, 0.05)
    capture = st.text_input("Capture filter (globs, comma separated; empty = everything)", "")
    if st.button("Run", type="primary"):
        try:
            source = str(guard.trace_path(directory, "checkpoint folder")) if directory.strip() else preset
            model = load_model(source, [o.strip() for o in overrides.split(",") if o.strip()])
            if token_ids.strip():
                ids = parse_token_list(token_ids, model)
                text = None
            else:
                text = chat_prompt(model, prompt, None, thinking) if chat else prompt
                ids = encode_prompt(model, text)
            bar = st.progress(0.0, text="tracing…")
            total = model.cfg.num_hidden_layers * max_new

            def progress(name: str, done: list[int] = [0]) -> None:  # noqa: B006 - a counter across calls
                if name.endswith("resid_post"):
                    done[0] += 1
                    bar.progress(min(1.0, done[0] / total), text=f"{name}")

            sampling = Sampling(temperature, top_k or None, top_p if top_p < 1 else None, model.suppress_tokens)
            globs = [g.strip() for g in capture.split(",") if g.strip()] or None
            guard.check_run(model.cfg, len(ids), int(max_new), globs, backend)
            stop = st.empty()
            stop.button("Cancel", key="cancel_run")  # any click reruns the page, which stops this run
            try:
                with guard.run_slot():  # a bounded pool shared by every session: wait for a free worker
                    trace = run_trace(model, ids, sampling=sampling, max_new_tokens=int(max_new), prompt=text,
                                      capture=globs, backend=backend, listener=progress)
            finally:
                stop.empty()
            bar.empty()
            open_trace(trace)
            st.rerun()
        except TracerError as exc:
            st.error(guard.scrub(str(exc)))

with open_tab:
    uploaded = st.file_uploader("Upload a .npz trace", type=["npz"], max_upload_size=guard.settings().max_upload_mb)
    if uploaded is not None and st.session_state.get("uploaded_name") != uploaded.name + str(uploaded.size):
        st.session_state.uploaded_name = uploaded.name + str(uploaded.size)
        try:
            open_trace(read_upload(uploaded))
            st.rerun()
        except TracerError as exc:
            st.error(guard.scrub(str(exc)))
    typed = st.text_input("…or a file of the traces folder", key="open_path",
                          help=", ".join(guard.trace_files()[:50]) or None)
    if st.button("Open") and typed.strip():
        if open_path(typed.strip()):
            st.rerun()
