"""How long each explorer page takes to become interactive on a full 28-layer Qwen3-0.6B trace of 32 tokens.

Each page is run the way Streamlit serves it (AppTest executes the same script); the time of one page is its
first full run after the trace is open. The target is 3 s per page on this machine.

    python benchmarks/app_load.py [--trace FILE.npz]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from tracer.run import load_model, run_trace
from tracer.tracefile import save_trace

APP = str(Path(__file__).resolve().parents[1] / "apps" / "explorer.py")
PAGES = ["run", "pipeline", "steps", "attention", "rope", "moe", "sampling", "tokens", "compare", "long_context"]


def make_trace(directory: Path) -> str:
    model = load_model("qwen3-0.6b")
    ids = [(i * 4099) % 151936 for i in range(32)]
    return str(save_trace(directory / "qwen3-0.6b-32.npz", run_trace(model, ids)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", help="an existing trace (default: trace qwen3-0.6b on 32 tokens first)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trace = args.trace or make_trace(Path(tmp))
        os.environ["QWEN3_TRACER_TRACE"] = trace
        at = AppTest.from_file(APP, default_timeout=300)
        start = time.perf_counter()
        at.run()
        print(f"open {Path(trace).name} ({Path(trace).stat().st_size / 1e6:.0f} MB): {time.perf_counter() - start:.2f}s")
        worst = 0.0
        for page in PAGES:
            at.switch_page(f"views/{page}.py")
            start = time.perf_counter()
            at.run()
            seconds = time.perf_counter() - start
            worst = max(worst, seconds)
            status = "error" if at.exception else "ok"
            print(f"{page:10} {seconds:6.2f}s  {status}")
        print(f"slowest page {worst:.2f}s (target ≤ 3 s)")


if __name__ == "__main__":
    main()
