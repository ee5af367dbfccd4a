"""Execute one jupytext notebook in a fresh Jupyter kernel (used by test_notebooks.py in a subprocess).

    python tests/notebook_runner.py NOTEBOOK.py [EXTRA_CELL]...

Exit 0 when every cell ran; otherwise the failing cell's error is printed and the exit code is 1.
"""

import sys
import time
from pathlib import Path

import jupytext
import nbclient
import nbformat


def main() -> int:
    path = Path(sys.argv[1])
    nb = jupytext.read(path)
    nb.cells += [nbformat.v4.new_code_cell(code) for code in sys.argv[2:]]
    start = time.perf_counter()
    try:
        nbclient.NotebookClient(nb, timeout=120, startup_timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
    except nbclient.exceptions.CellExecutionError as exc:
        print(str(exc)[-3000:])
        return 1
    print(f"{path.name}: {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
