"""Execute one jupytext notebook in a fresh Jupyter kernel (used by test_notebooks.py in a subprocess).

    python tests/notebook_runner.py NOTEBOOK.py [--save=OUT.ipynb] [NAME=EXPRESSION]... [EXTRA_CELL]...

``NAME=EXPRESSION`` fills an exercise's answer: the line ``NAME = None  # ← your answer · 你的答案`` becomes
``NAME = EXPRESSION``. Each other argument is a cell run after the notebook. ``--save`` writes the executed
notebook, outputs included. Exit 0 when every cell ran; otherwise the failing cell's error is printed and the
exit code is 1.
"""

import re
import sys
import time
from pathlib import Path

import jupytext
import nbclient
import nbformat

ANSWER = re.compile(r"^(answer_\d+)=(.+)$", re.S)


def main() -> int:
    path = Path(sys.argv[1])
    nb = jupytext.read(path)
    extra, save = [], None
    for arg in sys.argv[2:]:
        if arg.startswith("--save="):
            save = Path(arg.removeprefix("--save="))
            continue
        match = ANSWER.match(arg)
        if not match:
            extra.append(arg)
            continue
        name, expression = match.groups()
        line = re.compile(rf"^{name} = None  # .*$", re.M)
        hits = [cell for cell in nb.cells if cell.cell_type == "code" and line.search(cell.source)]
        if len(hits) != 1:
            print(f"{path.name}: no single line '{name} = None  # …' to fill")
            return 1
        hits[0].source = line.sub(f"{name} = {expression}", hits[0].source)
    nb.cells += [nbformat.v4.new_code_cell(code) for code in extra]
    start = time.perf_counter()
    try:
        nbclient.NotebookClient(nb, timeout=120, startup_timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
    except nbclient.exceptions.CellExecutionError as exc:
        print(str(exc)[-3000:])
        return 1
    if save is not None:
        nbformat.write(nb, str(save))
    print(f"{path.name}: {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
