"""Every classroom notebook runs top to bottom in a real Jupyter kernel, and its graded exercises check answers."""

import functools
import math
import os
import re
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



def _token_count(text: str) -> int:
    """Qwen3's token count from the ``tokenizers`` library (an implementation independent of the project's)."""
    import json

    from tokenizers import Tokenizer

    from tracer.text.tokenizer import tokenizer_json

    return len(Tokenizer.from_str(json.dumps(tokenizer_json())).encode(text).ids)


def _seed_expert() -> int:
    from tracer.sources import seed004

    return int(seed004.MOE["layers.0.moe.gates"][3].argmax())


def _seed_lens() -> str:
    """Softmax by hand of seed 004 §4-6-2's logits, at the chosen token 請 (id 4): the toy's last-block lens."""
    from tracer.sources import seed004

    logits = [float(v) for v in seed004.MOE["sample.0.logits"]]
    return str(math.exp(logits[4]) / sum(math.exp(v) for v in logits))


# Right answers of every exercise, from the seed documents (seed 004 §3-5-6, §3-5-8, §4-5-10, §4-5-14, §4-6-2)
# or worked out here by hand; each wrong answer in WRONG (exercise 1, 2 … in order) must be reported wrong, with
# its hint.
RIGHT = {
    "01_dense_block_by_hand.py": ["0.707", "0.770", "3.383"],
    "02_moe_block_by_hand.py": ["0.744", lambda: str(_seed_expert()), "1.350"],
    "03_rope.py": [str(1e6 ** (-2 / 128)), str(math.cos(5)), str(math.cos(3))],
    "04_attention_gqa_kv_cache.py": [str(math.e ** 2 / (math.e + math.e ** 2)), "6", "10"],
    "05_full_size_qwen3.py": [lambda: str(_token_count("Hello, world! 明天交報告 😀")), "15_730_944", str(128 ** -0.5)],
    "06_sampling.py": [str(math.exp(5) / (math.exp(5) + math.exp(2) + math.exp(1))),
                       str(math.exp(2.5) / (math.exp(2.5) + math.exp(1) + math.exp(0.5))), "1"],
    "07_comparing_engines.py": ["0", str(2 ** -8), "drift.sort_values('max_rel').iloc[-1]['record']"],
    # §4-6-2: the chosen token's logit is the sum of its direct terms, and the lens of the toy's only block is the
    # softmax of the logits; the dropped expert wrote the whole logit and its replacement writes 0 along 請, so the
    # logit becomes 0; layer 3's head 6 has the largest direct term (0.27, the next 0.16: far above round-off)
    "08_why.py": ["10.638", _seed_lens, "0", "6"],
    # 448² is a multiple of 32: 28×28 patches, 196 tokens; the tiny picture's first text token is at 5 (0 start,
    # image ids 1..3, end 4); its last image token, row 1 column 2 of the 2×3 grid, has w = 1 + 2; Qwen3-VL-2B taps
    # 3 vision blocks (facts note §2, seed 002)
    "09_vision.py": [str((448 // 16) ** 2 // 4), "5", "3", "3"],
    # seed 001's example −ln 0.70 (its "MSE"); at <bos> the toy gives 明天 p ≈ 1e-10, so (p − 1) / 3; AdamW's first
    # step moves a weight by −lr against its gradient's sign; DPO at reference = policy is −log σ(0) = ln 2
    # (facts note §6)
    "10_training_step.py": [str(-math.log(0.7)), str(-1 / 3), "-0.05", str(math.log(2))],
    # long-context notes §1, §2, §7: 24 pairs kept, a² = (0.1 ln 4 + 1)², Qwen3-8B's 2·36·8·128·2 bytes per token
    # at 131,072 tokens, W − 1 cached keys + the new one
    "11_long_context.py": ["24", str((0.1 * math.log(4) + 1) ** 2), str(2 * 36 * 8 * 128 * 2 * 131072 / 2 ** 30),
                           "4"],
}
WRONG = {"01_dense_block_by_hand.py": [0.5], "02_moe_block_by_hand.py": [0.5], "03_rope.py": [0.5],
         "04_attention_gqa_kv_cache.py": [0.5], "05_full_size_qwen3.py": [7], "06_sampling.py": [0.84],
         "07_comparing_engines.py": [3],
         # 報告's logit (the runner-up), a uniform 1/6, the logit unchanged, head 4 (the most negative term)
         "08_why.py": [9.584, 1 / 6, 10.623, 4],
         # the patches (not the tokens), the index of the token, the index of the last image token, all 28 layers
         "09_vision.py": [784, 8, 6, 28],
         # the target's squared error (1 − 0.7)² (the seed's "MSE"), p − 1 not divided by N, a step along the
         # gradient, the implicit reward 0 taken for the loss
         "10_training_step.py": [0.09, -1.0, 0.05, 0.0],
         # the divided pairs, a once, the 32,768-token figure of the table, the whole prompt + 1
         "11_long_context.py": [40, 1.1386, 4.5, 11]}


def test_every_notebook_has_three_graded_exercises_or_more():
    """At least three ``answer_K = None`` cells per notebook, each with its right answer in RIGHT (and no old
    ungraded answer boxes)."""
    for path in NOTEBOOKS:
        source = path.read_text(encoding="utf-8")
        blanks = re.findall(r"^answer_(\d+) = None  # ← your answer · 你的答案$", source, re.M)
        assert len(blanks) >= 3 and blanks == [str(k) for k in range(1, len(blanks) + 1)], path.name
        assert len(RIGHT[path.name]) == len(blanks) >= len(WRONG[path.name]) >= 1, path.name
        assert "AnswerBox" not in source, path.name


def test_there_are_seven_notebooks():
    names = [p.name[:2] for p in NOTEBOOKS]
    assert names[:7] == ["01", "02", "03", "04", "05", "06", "07"]
    assert {"09", "10", "11"} <= set(names)  # vision, one training step, long context
    assert "08" in names  # why this token


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, capsys):
    # the graded exercises: the right answers filled in (and no exercise left without one), wrong ones reported
    # wrong with their hints
    answers = [a() if callable(a) else a for a in RIGHT[path.name]]
    n = len(answers)
    extra = [f"answer_{k}={a}" for k, a in enumerate(answers, start=1)]
    pairs = "[" + ", ".join(f"(ex{k}, answer_{k})" for k in range(1, n + 1)) + "]"
    extra.append(f"assert all(e.check(a).ok for e, a in {pairs}), [e.check(a).message for e, a in {pairs}]\n"
                 f"assert 'ex{n + 1}' not in dir()")
    for k, wrong in enumerate(WRONG[path.name], start=1):
        extra.append(f"v = ex{k}.check({wrong!r}); assert not v.ok and ex{k}.hint in v.message, v.message")
    extra.append(f"assert not ex2.check(None).ok\nw = ex{n}.widget(); assert w.children[0].value.startswith('<b>')")
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


def test_exercises_speak_the_notebooks_language(monkeypatch):
    from tracer.teaching.classroom import Exercise, language

    monkeypatch.setenv("QWEN3_TRACER_LANG", "zh")
    assert language() == "zh-Hans"
    ex = Exercise("nb06_t1", 0.936, logits="5, 2, 1")
    assert ex.question.startswith("课程的例子中 logits 为 (5, 2, 1)")
    wrong = ex.check(0.84)
    assert not wrong.ok and wrong.message.startswith("✗ 0.84 不对。提示:") and "148.4" in wrong.message
    traditional = Exercise("nb06_t1", 0.936, lang="zh-Hant", logits="5, 2, 1").check(0.936)
    assert traditional.ok and traditional.message == "✓ 0.936 正確。"
    assert not Exercise("nb07_worst", "logits", lang="en", value=0.1, start="logits").check("final_norm").ok


PROSE_IMPORT = "from tracer.teaching.classroom import prose  # "
PROSE_CALL = re.compile(r'^prose\("(nb(\d\d)_md(\d+))"\)$', re.M)
LABEL_KEY = re.compile(r"notebooks\.nb(\d\d)_lbl_(\w+)$")


def _english_runs(text: str) -> list[str]:
    """Runs of five English words or more outside code (fenced blocks, `spans`): prose left in English."""
    text = re.sub(r"`[^`]*`", " ", re.sub(r"```.*?```", " ", text, flags=re.S))
    return re.findall(r"(?:\b[A-Za-z][A-Za-z'’]*\b[ ,]+){4,}\b[A-Za-z][A-Za-z'’]*\b", text)


def test_the_text_of_every_notebook_comes_from_the_catalog():
    """No markdown cell keeps prose in a fixed language: each passage is a hidden cell ``prose("nbNN_mdK")``
    (nothing else in it), notebook NN uses nbNN_md1, nbNN_md2 … in order, and the catalog has no passage that no
    notebook shows."""
    import jupytext

    from tracer.i18n import LANGS, catalog

    used = []
    for path in NOTEBOOKS:
        cells = jupytext.read(path).cells
        assert [c.cell_type for c in cells] == ["code"] * len(cells), f"{path.name}: a markdown cell"
        keys = []
        for cell in cells:
            if not cell.metadata.get("jupyter", {}).get("source_hidden"):
                assert "prose(" not in cell.source, f"{path.name}: prose() in a visible cell"
                continue
            lines = [line for line in cell.source.splitlines() if line and not line.startswith(PROSE_IMPORT)]
            assert len(lines) == 1 and PROSE_CALL.match(lines[0]), f"{path.name}: hidden cell {cell.source!r}"
            keys.append(PROSE_CALL.match(lines[0]).group(1))
        assert keys == [f"nb{path.name[:2]}_md{k}" for k in range(1, len(keys) + 1)] and keys, path.name
        assert cells[0].source.startswith(PROSE_IMPORT), f"{path.name}: its first cell is not its title"
        used += keys
    passages = re.compile(r"notebooks\.nb\d\d_md\d+$")
    for lang in LANGS:
        assert sorted(k for k in catalog(lang) if passages.match(k)) == sorted(f"notebooks.{k}" for k in used), lang
    assert _english_runs(catalog("en")["notebooks.nb08_md4"]) and not _english_runs(catalog("zh-Hans")[
        "notebooks.nb08_md4"])  # the detector used on Chinese runs below sees English prose


def test_every_label_of_the_catalog_is_printed_by_its_notebook():
    """The labels, column names and lines notebook NN prints are the catalog's ``nbNN_lbl_*`` keys: each is named
    by notebook NN (whole, or by its prefix in an f-string over a table's columns), and every key a notebook names
    exists."""
    from tracer.i18n import catalog

    sources = {path.name[:2]: path.read_text(encoding="utf-8") for path in NOTEBOOKS}
    labels = [LABEL_KEY.match(k) for k in catalog("en") if LABEL_KEY.match(k)]
    assert {m.group(1) for m in labels} == set(sources)  # every notebook prints its labels from the catalog
    for m in labels:
        number, name = m.groups()
        assert f'"nb{number}_lbl_{name}"' in sources[number] or f'f"nb{number}_lbl_{{' in sources[number], m.string
    for number, source in sources.items():
        for key in re.findall(r'label\("([\w.]+)"', source):
            assert (key if "." in key else f"notebooks.{key}") in catalog("en"), (number, key)
            assert "." in key or key.startswith(f"nb{number}_lbl_") or key in ("side_engine", "side_seed"), key


def test_notebook_texts_hide_no_token_as_a_tag():
    """Markdown and the exercise widget's HTML hide ``<bos>`` as an unknown tag: catalog texts of the notebooks
    put such tokens in backticks."""
    from tracer.i18n import LANGS, catalog

    for lang in LANGS:
        for key, text in catalog(lang).items():
            if key.startswith("notebooks."):
                outside = re.sub(r"`[^`]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))
                assert not re.search(r"<[A-Za-z/!?]", outside), f"{lang}: {key}"


def _run(path: Path, lang: str, *cells: str, save: Path | None = None) -> None:
    args = [f"--save={save}"] if save else []
    proc = subprocess.run([sys.executable, str(RUNNER), str(path), *args, *cells], capture_output=True, text=True,
                          timeout=420, env={**os.environ, "QWEN3_TRACER_LANG": lang})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def _browser_terms() -> set[str]:
    """The ``TERMS`` of test_browser.py (read, not imported: that module skips without a browser)."""
    import ast

    tree = ast.parse(Path(__file__).with_name("test_browser.py").read_text(encoding="utf-8"))
    return next(set(ast.literal_eval(node.value)) for node in tree.body if isinstance(node, ast.Assign)
                and getattr(node.targets[0], "id", "") == "TERMS")


# Latin words a Chinese notebook may print: the explorer's technical terms, the ones the Chinese notebook texts
# keep too (lens, patch, the gguf package, the attribution term "embed"), Python's literals, and the words of
# notebook 05's own prompt "Hello, world! 明天交報告 😀" in its token table
LATIN_WORDS = _browser_terms() | {"lens", "patch", "patches", "gguf", "embed", "true", "false", "none", "inf", "nan",
                                  "hello", "world"}
# a chunk with one of these characters is code, a record name or a formula (``layers.0.attn.q_rope``, ``X(1)``,
# ``q·k``, ``k_cache``, ``dmin = 8.4e-04``): kept as it is in every language
CODE_CHARS = re.compile(r"[_0-9.|=(){}/\\^~*+−√²³₀-₉·]")
CHUNKS = re.compile(r"[\s\u3000-\u303f\u4e00-\u9fff\uff00-\uffef“”‘’「」,:;!?]+")


@functools.lru_cache(maxsize=None)
def _catalog_pieces(lang: str) -> tuple[str, ...]:
    """The literal parts of every catalog text in ``lang``, longest first: text the catalog gives is translated
    (a Chinese text may quote an English source, as the errata do)."""
    import string

    from tracer.i18n import catalog

    pieces = {literal.strip() for text in catalog(lang).values()
              for literal, *_ in string.Formatter().parse(text) if len(literal.strip()) >= 6}
    return tuple(sorted(pieces, key=len, reverse=True))


def _english_words(text: str, lang: str) -> list[str]:
    """English words in a code cell's output shown in ``lang``, outside catalog texts, ChatML messages (the
    model's input), tokens written as tags, quoted strings of Python reprs (token texts), code, record names,
    formulas and their names, numbers, acronyms and the course's technical terms.

    >>> _english_words("greedy choice: 4 請", "zh-Hans"), _english_words("贪婪选择:4 請", "zh-Hans")
    (['choice'], [])
    """
    text = re.sub(r"<\|im_start\|>(?:(?!<\|im_start\|>).)*?<\|im_end\|>|<\|im_start\|>\w+", " ", text, flags=re.S)
    for piece in _catalog_pieces(lang):
        text = text.replace(piece, " ")
    text = re.sub(r"'[^'\n]*'", " ", re.sub(r"<[^<>\n]*>", " ", text))
    text = re.sub(r"[A-Za-z_][\w.]*\(|[A-Za-z_]\w*\s*=", " ", text)  # a call, a name in an equation: dmin = 8.4e-04
    words = []
    for chunk in CHUNKS.split(text):
        if chunk.lstrip("(").startswith("--"):  # a command-line option
            continue
        chunk = re.sub(r"(?<=[A-Za-z])\[\d+\]", "", chunk).strip("()[]-–—.…")  # a column "engine[0]": engine
        if CODE_CHARS.search(chunk) or re.fullmatch(r"[0-9a-f]{2}|[thw]+", chunk):  # hex bytes, M-RoPE axes
            continue
        words += [w for w in re.findall(r"[A-Za-z]+", chunk)
                  if len(w) > 1 and w.lower() not in LATIN_WORDS and not w.isupper() and not re.search(r".[A-Z]", w)]
    return words


def test_the_english_word_detector():
    """What the Chinese runs below call English in a code cell's output, and what they leave alone."""
    from tracer.i18n import t

    assert _english_words("greedy choice: 4 請", "zh-Hans") == ["choice"]
    assert _english_words("engine[0]\nsc_j (scale)\n 144 bytes;d = 9.8e-05", "zh-Hant") == ["engine", "scale", "bytes"]
    assert _english_words(t("notebooks.difference_agrees", "en", diff=0.0), "zh-Hans") == ["agrees", "with",
                                                                                          "document", "largest",
                                                                                          "difference"]
    kept = ("layers.0.attn.q_rope: 0.5 X(1): q·k dmin = 8.4e-04 k_cache top-1 token logits KV head -inf None "
            "['<bos>', ' agreement'] OK MISSING RoPE (--capture) e4 ba a4 thwthwt Reply(thinking='', content='') "
            "<|im_start|>user\nWeather in Taipei?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>")
    assert _english_words(kept, "zh-Hans") == []
    assert _english_words(t("longctx.errata_embedding_claim", "zh-Hans"), "zh-Hans") == []  # a quoted source
    assert not _english_words(t("notebooks.nb01_lbl_greedy", "zh-Hant", id=4, token="請"), "zh-Hant")


def _code_output_text(output: dict) -> str:
    """The text a code cell's output shows: a stream's text, a displayed table's HTML as text (else its
    text/plain); nothing for Markdown (checked apart), figures and widgets."""
    import html

    data = output.get("data", {})
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if {"text/markdown", "application/vnd.plotly.v1+json", "application/vnd.jupyter.widget-view+json"} & set(data):
        return ""
    if "text/html" in data:
        table = re.sub(r"<style.*?</style>", " ", data["text/html"], flags=re.S)
        return html.unescape(re.sub(r"<[^>]*>", "\n", table))
    return data.get("text/plain", "")


def _output_text(output: dict) -> str:
    import html

    data = output.get("data", {})
    return "\n".join([output.get("text", ""), html.unescape(data.get("text/markdown", "")), data.get("text/plain", ""),
                      html.unescape(data.get("text/html", ""))])


# the catalog keys of the errata (and confirmed claims) each notebook shows, by prefix
ERRATA_SHOWN = {"09_vision.py": ("vision.erratum_", "vision.errata_title", "vision.confirmed_"),
                "10_training_step.py": ("train.errata_", "train.col_seed_says", "train.col_right"),
                "11_long_context.py": ("longctx.errata_",)}


def assert_text_in_one_language(executed: Path, name: str, lang: str) -> None:
    """Every passage of the executed notebook is its catalog text in ``lang``; every Markdown output (passages,
    exercises, verdicts, lists) is Chinese with no English prose; what code cells print and display (labels, table
    columns, the engine's notes) has no English word; errata appear in ``lang`` and in no other."""
    import string

    import nbformat

    from tracer.i18n import LANGS, catalog, t

    cells = nbformat.read(str(executed), as_version=4).cells
    shown = "\n".join(_output_text(o) for cell in cells for o in cell.get("outputs", []))
    passages = 0
    for cell in cells:
        markdown = [o["data"]["text/markdown"] for o in cell.get("outputs", []) if "text/markdown" in o.get("data", {})]
        key = PROSE_CALL.search(cell.source)
        if key:
            assert markdown == [t(f"notebooks.{key.group(1)}", lang)], (name, key.group(1), markdown)
            passages += 1
        for text in markdown:
            assert re.search(r"[\u4e00-\u9fff]", text) and not _english_runs(text), (name, text[:300])
        for output in cell.get("outputs", []):
            shown_text = _code_output_text(output)
            assert not _english_words(shown_text, lang), (name, _english_words(shown_text, lang), shown_text[:300])
    assert passages == sum(1 for c in cells if PROSE_CALL.search(c.source)) > 0
    keys = [k for k in catalog(lang) if k.startswith(ERRATA_SHOWN.get(name, ("-",)))
            and not any(f for _, f, _, _ in string.Formatter().parse(catalog(lang)[k]))]
    assert bool(keys) == (name in ERRATA_SHOWN), name
    for k in keys:
        assert t(k, lang) in shown, (name, k)
        for other in LANGS:
            assert t(k, other) == t(k, lang) or t(k, other) not in shown, (name, k, other)


# notebooks run in Chinese, with a cell run after each; 06 and 11 check their kernel's text and exercises too
CHINESE = {
    ("01_dense_block_by_hand.py", "zh-Hans"): "assert LANG == 'zh-Hans'",
    ("02_moe_block_by_hand.py", "zh-Hant"): "assert LANG == 'zh-Hant'",
    ("03_rope.py", "zh-Hans"): "assert LANG == 'zh-Hans'",
    ("04_attention_gqa_kv_cache.py", "zh-Hant"): "assert LANG == 'zh-Hant'",
    ("05_full_size_qwen3.py", "zh-Hans"): "assert LANG == 'zh-Hans'",
    ("06_sampling.py", "zh-Hant"): (
        "assert prose('nb06_md1').data.startswith('# 6 · 採樣')\n"
        "assert ex1.question.startswith('課程的例子中 logits 為 (5, 2, 1)')\n"
        "assert ex1.check(0.5).message.startswith('✗ 0.5 不對。提示:')"),
    ("11_long_context.py", "zh-Hant"): (
        "assert LANG == 'zh-Hant' and t('longctx.nb_intro', LANG).startswith('Qwen3 以 32,768')\n"
        "assert ex1.question.startswith('YaRN ×4、原始視窗 32,768 個 token 時')\n"
        "assert ex4.check(11).message.startswith('✗ 11 不對。提示:第 0 層不滑動')"),
    ("07_comparing_engines.py", "zh-Hans"): "assert LANG == 'zh-Hans'",
    ("08_why.py", "zh-Hans"): "assert LANG == 'zh-Hans'",
    ("09_vision.py", "zh-Hans"): "assert LANG == 'zh-Hans'",
    ("09_vision.py", "zh-Hant"): "assert LANG == 'zh-Hant'",
    ("10_training_step.py", "zh-Hans"): "assert LANG == 'zh-Hans'",
}


@pytest.mark.parametrize("name,lang", sorted(CHINESE), ids=[f"{n[:2]}-{lang}" for n, lang in sorted(CHINESE)])
def test_a_notebook_in_chinese(name, lang, tmp_path):
    """``tracer notebooks --lang zh-Hans|zh-Hant``: the notebook's text, exercises and errata are in that
    language only."""
    path = next(p for p in NOTEBOOKS if p.name == name)
    if "backend=" in path.read_text(encoding="utf-8"):
        pytest.importorskip("torch")
    _run(path, lang, CHINESE[name, lang], save=tmp_path / "run.ipynb")
    assert_text_in_one_language(tmp_path / "run.ipynb", name, lang)
