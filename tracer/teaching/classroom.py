"""Helpers for the classroom notebooks: offline plotly, graded exercises, and the engine next to the document.

No model math here: the notebooks call ``tracer.engine.ops`` and read traces; this module only displays and checks.
The notebooks' language is ``QWEN3_TRACER_LANG`` (set by ``tracer notebooks --lang``), read by ``language()``.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from tracer import TracerError
from tracer.i18n import normalize, t, translator

LANG_ENV = "QWEN3_TRACER_LANG"


def language() -> str:
    """The notebooks' language: ``tracer notebooks --lang`` (``en`` when unset)."""
    import os

    return normalize(os.environ.get(LANG_ENV) or "en")


def prose(key: str, lang: str | None = None) -> Any:
    """A passage of a notebook's text (the ``notebooks`` catalog's ``KEY``) in the notebooks' language."""
    from IPython.display import Markdown

    return Markdown(translator(lang or language())(f"notebooks.{key}"))


def label(key: str, lang: str | None = None, /, **values: Any) -> str:
    """A label, column name or line a notebook prints, in the notebooks' language: the ``notebooks`` catalog's
    ``KEY``, or a whole key ``AREA.KEY`` (a column the explorer names too), with ``values`` filled in.

    >>> label("nb01_lbl_greedy", "zh-Hant", id=4, token="請"), label("app.col_record", "zh-Hans")
    ('貪婪選擇:4 請', '记录')
    """
    return t(key if "." in key else f"notebooks.{key}", lang or language(), **values)


def _escape_tags(text: str) -> str:
    """A tag's ``<`` outside code spans as ``&lt;``: Markdown would hide ``<think>`` as an unknown HTML tag.

    >>> _escape_tags("<think> ends at `</think>`; <|im_end|> and 1 < 2 stay")
    '&lt;think> ends at `</think>`; <|im_end|> and 1 < 2 stay'
    """
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(part if k % 2 else re.sub(r"<(?=[A-Za-z/!?])", "&lt;", part) for k, part in enumerate(parts))


def bullets(keys: Iterable[str], title: str | None = None, lang: str | None = None) -> Any:
    """Catalog texts (whole keys such as ``vision.erratum_256``) as one Markdown list in the notebooks'
    language, under the text of the key ``title`` in bold.

    >>> keys = ["i18n.language_name", "i18n.language_name"]
    >>> bullets(keys, "i18n.language_name", lang="zh-Hant").data.split("\\n")
    ['**繁體中文**', '', '- 繁體中文', '- 繁體中文']
    """
    from IPython.display import Markdown

    tr = translator(lang or language())
    lines = [f"**{_escape_tags(tr(title))}**", ""] if title else []
    return Markdown("\n".join(lines + [f"- {_escape_tags(tr(key))}" for key in keys]))


def inline_html(text: str) -> str:
    """A line of catalog Markdown as HTML for a widget: escaped, with its `code` spans and **bold**.

    >>> inline_html("Token `<bos>` is **first** & <b>")
    'Token <code>&lt;bos&gt;</code> is <b>first</b> &amp; &lt;b&gt;'
    """
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out).replace("\n", "<br>")


def full_table(rows: list[dict[str, Any]]) -> Any:
    """Rows of text as a table that shows every cell whole (pandas' own display cuts cells at 50 characters),
    escaped as HTML.

    >>> html_text = full_table([{"claim": "x" * 80 + " <|endoftext|>"}]).to_html()
    >>> "x" * 80 + " &lt;|endoftext|&gt;" in html_text, "..." in html_text
    (True, False)
    """
    import pandas as pd

    return pd.DataFrame(rows).style.format(escape="html").hide(axis="index")


def setup() -> None:
    """Send plotly figures as their own MIME type: JupyterLab draws them with the ``jupyterlab-plotly`` extension
    installed with plotly, offline (no CDN). (The "notebook" renderer also injects plotly.js into the page, which
    blocks the kernel when it first happens inside a widget's output area.) In IPython, an input error
    (``TracerError``) raised in a cell is shown as one line in the notebooks' language (``show_errors``)."""
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype"
    show_errors()


def show_errors() -> bool:
    """Show a ``TracerError`` raised in a cell as ``TracerError: <message>`` in the notebooks' language (read when
    it is raised), like the command line, instead of an English traceback. False outside IPython (nothing to do)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.set_custom_exc((TracerError,), _tracer_error_lines)
    return True


def _tracer_error_lines(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None
                        ) -> list[str]:
    """IPython's custom exception handler: show the error's one line, in the notebooks' language. IPython ignores
    what such a handler returns, so it shows the lines itself, through the hook its kernels override to send an
    error to the page (``_showtraceback``: the same call IPython's own ``showtraceback`` ends with)."""
    text = value.text(language()) if isinstance(value, TracerError) else str(value)
    lines = [f"{etype.__name__}: {text}"]
    shell._showtraceback(etype, value, lines)
    return lines


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str

    def _repr_markdown_(self) -> str:
        return _escape_tags(self.message)


class Exercise:
    """A graded exercise: the student computes one value; ``check`` says right or wrong, with a hint whose
    numbers come from the trace. Question and hint are the ``notebooks`` catalog's ``KEY`` and ``KEY_hint``.

    >>> ex = Exercise("nb06_t1", 0.936, lang="en", logits="5, 2, 1")
    >>> ex.check(0.94).ok, ex.check(0.84).ok, ex.check(None).ok
    (True, False, False)
    """

    def __init__(self, key: str, expected: float | int | str, tolerance: float = 5e-3, lang: str | None = None,
                 **values: Any):
        self.key = key
        self.expected = expected
        self.tolerance = tolerance
        self.tr = translator(lang or language())
        self.values = values

    @property
    def question(self) -> str:
        return self.tr(f"notebooks.{self.key}", **self.values)

    @property
    def hint(self) -> str:
        return self.tr(f"notebooks.{self.key}_hint", **self.values)

    def check(self, answer: Any) -> Verdict:
        """Right when equal (text, whole numbers) or within the tolerance (hand calculation)."""
        if answer is None:
            return Verdict(False, self.tr("notebooks.unanswered"))
        if isinstance(self.expected, str):
            ok = str(answer).strip() == self.expected
        else:
            try:
                ok = abs(float(answer) - float(self.expected)) <= self.tolerance
            except (TypeError, ValueError):
                return Verdict(False, self.tr("notebooks.not_a_number", answer=repr(answer)))
        if ok:
            return Verdict(True, self.tr("notebooks.right", answer=answer))
        return Verdict(False, self.tr("notebooks.wrong", answer=answer, hint=self.hint))

    def widget(self) -> Any:
        """An ipywidgets box: the question, a field for the answer, a Check button and the verdict (an HTML
        widget whose value each click replaces).

        >>> box = Exercise("nb06_t1", 0.936, lang="en", logits="5, 2, 1").widget()
        >>> question, (field, button), verdict = box.children[0], box.children[1].children, box.children[2]
        >>> field.value = " 0.94 "; button.click(); verdict.value
        '✓ 0.94 is right.'
        >>> field.value = "<b>"; button.click(); verdict.value
        "'&lt;b&gt;' is not a number."
        """
        import ipywidgets as widgets

        field = widgets.Text(description=self.tr("notebooks.answer"))
        button = widgets.Button(description=self.tr("notebooks.check"))
        verdict = widgets.HTML()

        def on_click(_: Any) -> None:
            verdict.value = inline_html(self.check(field.value.strip() or None).message)

        button.on_click(on_click)
        return widgets.VBox([widgets.HTML(f"<b>{html.escape(self.tr('notebooks.exercise'))}</b> "
                                          f"{inline_html(self.question)}"),
                             widgets.HBox([field, button]), verdict])

    def _repr_markdown_(self) -> str:
        return f"**{self.tr('notebooks.exercise')}** {_escape_tags(self.question)}"


def side_by_side(ours: np.ndarray, printed: np.ndarray, rows: list[str] | None = None, decimals: int = 3,
                 lang: str | None = None) -> Any:
    """The engine's matrix next to the document's, with the largest difference (a pandas Styler-free frame);
    its column names in the notebooks' language.

    >>> list(side_by_side([[1.0]], [[1.0004]], lang="zh-Hans").columns)
    ['引擎[0]', '讲义[0]']
    """
    import pandas as pd

    ours = np.atleast_2d(np.asarray(ours, dtype=np.float64))
    printed = np.atleast_2d(np.asarray(printed, dtype=np.float64))
    cols = [label("side_engine", lang, j=j) for j in range(ours.shape[1])] + \
        [label("side_seed", lang, j=j) for j in range(printed.shape[1])]
    frame = pd.DataFrame(np.round(np.hstack([ours, printed]), decimals), columns=cols,
                         index=rows if rows and len(rows) == ours.shape[0] else None)
    frame.attrs["max_difference"] = float(np.abs(ours - printed).max()) if ours.shape == printed.shape else np.inf
    return frame


def difference_note(ours: np.ndarray, printed: np.ndarray, tolerance: float = 1e-3, lang: str | None = None) -> str:
    """One line in the notebooks' language: does the engine agree with the document, and by how much.

    >>> difference_note([1.0, 2.0], [1.0, 2.0004], lang="en")
    'agrees with the document (largest difference 4.0e-04)'
    >>> difference_note([1.0], [1.25], lang="zh-Hans")
    '与讲义相差最多 0.2500:见下方说明'
    """
    diff = float(np.abs(np.asarray(ours, dtype=np.float64) - np.asarray(printed, dtype=np.float64)).max())
    return label("difference_agrees" if diff <= tolerance else "difference_differs", lang, diff=diff)
