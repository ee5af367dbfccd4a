"""Every classroom notebook runs top to bottom in a real Jupyter kernel, and the answer boxes check answers."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jupytext")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.py"))
RUNNER = Path(__file__).with_name("notebook_runner.py")

# Right answers are the document's own numbers (seed 004 §3-5-6, §3-5-8, §4-5-10, §4-5-14); wrong ones are not.
ANSWER_CHECKS = {
    "01_dense_block_by_hand.py": [("box", 0.770, 0.5), ("box_f", 3.383, 1.964)],
    "02_moe_block_by_hand.py": [("box", 0.744, 0.5), ("box_z", 1.350, 1.974)],
    # seed 001's example −ln 0.70 (its "MSE"); AdamW's first step moves a weight by −lr against its gradient's sign;
    # DPO at reference = policy is −log σ(0) = ln 2 (facts note §6)
    "10_training_step.py": [("box_ce", 0.357, 0.09), ("box_adam", -0.05, 0.05), ("box_dpo", 0.693, 0.0)],
    # 448² is a multiple of 32: 28×28 patches, 196 tokens; the tiny picture's first text token is at 5 (0 start,
    # image ids 1..3, end 4); Qwen3-VL-2B taps 3 vision blocks (facts note §2, seed 002)
    "09_vision.py": [("box_448", 196, 784), ("box_pos", 5, 8), ("box_ds", 3, 28)],
    # long-context notes §1, §2, §7: 24 pairs kept, a² = 1.29648, 4.50 GiB, W − 1 cached keys + the new one
    "08_why.py": [("box1", 10.638, 9.584)],  # §4-6-2: the chosen token's logit is the sum of the direct terms
    "11_long_context.py": [("box_kept", 24, 40), ("box_a2", 1.2965, 1.1386), ("box_kv", 4.5, 9.0),
                           ("box_window", 4, 11)],
}


def test_there_are_seven_notebooks():
    names = [p.name[:2] for p in NOTEBOOKS]
    assert names[:7] == ["01", "02", "03", "04", "05", "06", "07"]
    assert {"09", "10", "11"} <= set(names)  # vision, one training step, long context
    assert "08" in names  # why this token


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, capsys):
    extra = []
    for name, right, wrong in ANSWER_CHECKS.get(path.name, []):
        extra.append(f"assert {name}.check({right}).ok, {name}.check({right}).message\n"
                     f"assert not {name}.check({wrong}).ok\n"
                     f"w = {name}.widget(); assert w.children[0].value.startswith('<b>')")
    if "backend=" in path.read_text(encoding="utf-8"):
        pytest.importorskip("torch")
    # a fresh process per notebook, with one retry: a kernel that never answers (a lost message at start-up,
    # seen rarely on this machine) must not hang the suite
    for attempt in (1, 2):
        proc = subprocess.Popen([sys.executable, str(RUNNER), str(path), *extra], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=420)
            break
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and its kernel
            proc.communicate()
            if attempt == 2:
                pytest.fail(f"{path.name} did not finish in 420 s, twice")
    assert proc.returncode == 0, out[-3000:] + err[-2000:]
    with capsys.disabled():
        print(f"\n{out.strip().splitlines()[-1]}")


def test_tracer_notebooks_opens_jupyterlab_on_the_folder(tmp_path):
    import socket
    import time
    import urllib.request

    pytest.importorskip("jupyterlab")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tracer.cli", "notebooks", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, status = time.time() + 90, None
        while time.time() < deadline and status is None:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=5).status
            except OSError:
                time.sleep(1)
        assert status == 200
        listing = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents", timeout=10).read().decode()
        assert "01_dense_block_by_hand.ipynb" in listing and "07_comparing_engines.py" in listing
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
