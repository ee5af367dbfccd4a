"""First render of every explorer page: on the toy traces of seed 004 and on a full 28-layer Qwen3-0.6B trace
of 32 prompt tokens and 4 decode steps (151,936-token vocabulary).

Each page is run the way Streamlit serves it (AppTest executes the same script, on the server side); the time
of a page is its first full run after the trace is open. Targets: 2 s per page on the toys, 3 s on Qwen3-0.6B.

    python benchmarks/app_load.py [--trace FILE.npz] [--lang en|zh-Hans|zh-Hant]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from tracer.commands.run import encode_prompt, load_model, run_trace
from tracer.traces.tracefile import save_trace

APP = str(Path(__file__).resolve().parents[1] / "apps" / "explorer.py")
PAGES = re.findall(r'"views/(\w+)\.py"', Path(APP).read_text(encoding="utf-8"))  # every page, in the menu's order


def make_traces(directory: Path) -> list[tuple[str, float]]:
    """(trace file, target seconds per page)."""
    out = []
    for name in ("toy-dense", "toy-moe"):
        model = load_model(name)
        trace = run_trace(model, encode_prompt(model, "明天交報告"), max_new_tokens=3, prompt="明天交報告")
        out.append((str(save_trace(directory / f"{name}.npz", trace)), 2.0))
    model = load_model("qwen3-0.6b")
    ids = [(i * 4099) % 151643 for i in range(32)]
    start = time.perf_counter()
    trace = run_trace(model, ids, max_new_tokens=5)  # 4 decode steps after the prompt
    print(f"traced qwen3-0.6b, 32 tokens + 4 decode steps: {time.perf_counter() - start:.1f}s")
    out.append((str(save_trace(directory / "qwen3-0.6b-32+4.npz", trace)), 3.0))
    return out


def measure(trace: str, target: float, lang: str) -> float:
    os.environ["QWEN3_TRACER_TRACE"] = trace
    os.environ["QWEN3_TRACER_LANG"] = lang
    at = AppTest.from_file(APP, default_timeout=300)
    start = time.perf_counter()
    at.run()
    print(f"\n{Path(trace).name} ({Path(trace).stat().st_size / 1e6:.0f} MB), open: {time.perf_counter() - start:.2f}s")
    worst = 0.0
    for page in PAGES:
        at.switch_page(f"views/{page}.py")
        start = time.perf_counter()
        at.run()
        seconds = time.perf_counter() - start
        worst = max(worst, seconds)
        status = "error" if at.exception else "ok"
        print(f"  {page:14} {seconds:6.2f}s  {status}")
    names = list(at.session_state.trace.names)
    heavy = [n for n in ("logits", "layers.27.mlp.act", names[-1]) if n in names]
    at.switch_page("views/steps.py")
    for name in heavy:  # the step walker on a vocabulary-wide record, a wide matrix, the last record
        at.session_state["step"] = names.index(name)
        start = time.perf_counter()
        at.run()
        seconds = time.perf_counter() - start
        worst = max(worst, seconds)
        print(f"  steps: {name:22} {seconds:6.2f}s  {'error' if at.exception else 'ok'}")
    print(f"  slowest page {worst:.2f}s (target ≤ {target:g} s): {'met' if worst <= target else 'MISSED'}")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", help="one existing trace (target 3 s) instead of the three default ones")
    parser.add_argument("--lang", default="en")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        traces = [(args.trace, 3.0)] if args.trace else make_traces(Path(tmp))
        for trace, target in traces:
            measure(trace, target, args.lang)


if __name__ == "__main__":
    main()
