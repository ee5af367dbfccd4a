"""Every classroom notebook runs top to bottom in a real Jupyter kernel, and the answer boxes check answers."""

import time
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.py"))

# Right answers are the document's own numbers (seed 004 §3-5-6, §3-5-8, §4-5-10, §4-5-14); wrong ones are not.
ANSWER_CHECKS = {
    "01_dense_block_by_hand.py": [("box", 0.770, 0.5), ("box_f", 3.383, 1.964)],
    "02_moe_block_by_hand.py": [("box", 0.744, 0.5), ("box_z", 1.350, 1.974)],
}


def run_notebook(path: Path, extra: list[str]) -> float:
    nb = jupytext.read(path)
    nb.cells += [nbformat.v4.new_code_cell(code) for code in extra]
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def test_there_are_seven_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, capsys):
    extra = []
    for name, right, wrong in ANSWER_CHECKS.get(path.name, []):
        extra.append(f"assert {name}.check({right}).ok, {name}.check({right}).message\n"
                     f"assert not {name}.check({wrong}).ok\n"
                     f"w = {name}.widget(); w.children[1].children[0].value = {right}; w.children[1].children[1].click()")
    if "torch" in path.read_text(encoding="utf-8"):
        pytest.importorskip("torch")
    seconds = run_notebook(path, extra)
    with capsys.disabled():
        print(f"\n{path.name}: {seconds:.1f}s")
