"""The running explorer in headless Chromium: every page in every language, on the toy example of seed 004 and
on a full-vocabulary 2-layer Qwen3-0.6B trace with decode steps.

Chromium comes from Debian's ``chromium`` package, which the project's setup (``.ci/run``) installs;
screenshots of every page in each language are kept in ``artifacts/screenshots/``.
"""

import re
import shutil
import socket
import string
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("streamlit")
sync_api = pytest.importorskip("playwright.sync_api")

from tracer.i18n import LANGS, catalog  # noqa: E402
from tracer.traces.tracefile import load_trace  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PAGES = ["", "pipeline", "steps", "attention", "rope", "moe", "sampling", "tokens", "compare", "long_context",
         "training", "quant", "vision"]
AREAS = ("app.", "figures.", "notes.", "schema.", "worked.", "sources.", "vision.", "latex.")
# words that stay as they are in the Chinese interface: the course's technical terms and names
TERMS = {"token", "tokens", "query", "key", "value", "head", "heads", "softmax", "logit", "logits", "top", "moe",
         "rope", "qk", "norm", "rmsnorm", "lm", "kv", "cache", "gqa", "swiglu", "mlp", "gate", "up", "down", "router",
         "block", "hidden", "embedding", "context", "one", "hot", "pre", "greedy", "prefill", "rotate", "half",
         "numpy", "torch", "float", "bfloat", "dh", "id", "ids", "dense", "toy", "qwen", "npz", "bos", "eos",
         "relu", "silu", "argmax", "post", "attention", "layernorm", "proj", "in", "out", "rms", "glob", "json",
         "hugging", "face", "checkpoint", "chatml", "the", "and",
         "tracer", "info", "trace", "show", "app", "demo", "log", "ref",  # command lines and formulas
         "quantize", "ckpt"}


# Streamlit's own interface words (the app hides or replaces them)
STREAMLIT_WORDS = ["Deploy", "Browse files", "Drag and drop", "Skip to main content", "Choose an option",
                   "Press Enter", "View less"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(trace: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tracer.cli", "app", str(trace), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail("the explorer did not start within 90 s")


def serving(trace: Path) -> Iterator[str]:
    """The explorer's address while it serves ``trace`` (a fixture's body: stopped when the fixture ends)."""
    proc, url = start(trace)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (bash .ci/run installs it)")
    tmp = tmp_path_factory.mktemp("browser")
    cli = [sys.executable, "-m", "tracer.cli", "trace"]
    subprocess.run(cli + ["toy-dense", "--prompt", "明天交報告", "--max-new-tokens", "2", "--out",
                          str(tmp / "toy-dense.npz")], check=True, capture_output=True)
    subprocess.run(cli + ["qwen3-0.6b", "--set", "num_hidden_layers=2", "--prompt", "明天交報告，鱻",
                          "--max-new-tokens", "3", "--out", str(tmp / "full.npz")], check=True, capture_output=True)
    return tmp


@pytest.fixture(scope="module")
def server(traces):
    yield from serving(traces / "toy-dense.npz")


@pytest.fixture(scope="module")
def full_server(traces):
    yield from serving(traces / "full.npz")


def launched() -> Iterator[Any]:
    """Headless Chromium (a fixture's body: closed when the fixture ends)."""
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def browser(traces):
    yield from launched()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.goto(url)
    return page


def settle(page):
    """Wait until the page's script has run and its figures are drawn."""
    page.locator("h1").first.wait_for(timeout=60_000)
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(timeout=60_000)
    page.wait_for_timeout(400)
    return page


def load(browser, url: str):
    return settle(open_page(browser, url))


def load_all(browser, urls: list[str]):
    """Open several pages at once (the server renders them side by side), then wait for each."""
    pages = [open_page(browser, url) for url in urls]
    return [settle(page) for page in pages]


def visible_text(page) -> str:
    """What a reader sees: the page's text, the text inside its figures (SVG) and its formulas as KaTeX draws
    them."""
    return page.evaluate("""() => document.body.innerText + '\\n' +
        Array.from(document.querySelectorAll('svg text')).map(t => t.textContent).join('\\n') + '\\n' +
        Array.from(document.querySelectorAll('.katex-html')).map(k => k.textContent).join('\\n')""")


def formula_text(page) -> str:
    """The text of the page's formulas as KaTeX draws them (not the TeX source)."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('.katex-html'))
        .map(k => k.textContent).join('\\n')""")


def english_formula_words() -> set[str]:
    """The English words of the formulas' ``\\text{…}`` groups that both Chinese catalogs replace (``latex``)."""
    en, zh, zh_hant = catalog("en"), catalog("zh-Hans"), catalog("zh-Hant")
    return {w for key, text in en.items() if key.startswith("latex.") for w in re.findall(r"[A-Za-z]+", text)
            if w not in zh[key] and w not in zh_hant[key]}


def formula_leaks(text: str) -> list[str]:
    """English formula words (whole words) in a formula's drawn text."""
    return sorted(w for w in english_formula_words() if re.search(rf"(?<![A-Za-z]){w}(?![A-Za-z])", text))


def english_catalog_phrases() -> list[str]:
    """The literal parts of English interface strings that a translation replaces (three words or more); a part
    that both Chinese translations of the key keep as it is (a name such as deepstack_visual_indexes, a command,
    a quotation of a seed document) is not replaced."""
    phrases = set()
    zh, zh_hant = catalog("zh-Hans"), catalog("zh-Hant")
    for key, text in catalog("en").items():
        if not key.startswith(AREAS) or zh.get(key) == text:
            continue
        for literal, *_ in string.Formatter().parse(text):
            for part in re.split(r"[:;()=·—–\[\]]", literal):
                words = re.findall(r"[A-Za-z]{2,}", part)
                kept = part.strip() in zh.get(key, "") and part.strip() in zh_hant.get(key, "")
                if len(words) >= 3 and {w.lower() for w in words} - TERMS and not kept:
                    phrases.add(part.strip())
    return sorted(phrases)


def english_runs(text: str) -> list[str]:
    """Runs of three or more English words that are not the course's technical terms."""
    runs = re.findall(r"[A-Za-z][A-Za-z'-]+(?:[ ]+[A-Za-z][A-Za-z'-]+){2,}", text)
    return [r for r in runs if {w.lower() for w in re.findall(r"[A-Za-z]+", r)} - TERMS]


def test_step_walker_shows_the_attention_matrix_of_seed_004(server, browser):
    page = load(browser, f"{server}/steps?record=layers.0.attn.probs")
    page.get_by_text("layers.0.attn.probs", exact=True).first.wait_for(timeout=60_000)
    table = page.locator("table").first
    table.wait_for(timeout=60_000)
    rows = [[c.strip() for c in row.locator("td").all_inner_texts()] for row in table.locator("tbody tr").all()]
    numbers = [r[-4:] for r in rows]
    assert numbers == [["1.000", "0.000", "0.000", "0.000"], ["0.230", "0.770", "0.000", "0.000"],
                       ["0.130", "0.435", "0.435", "0.000"], ["0.454", "0.136", "0.136", "0.275"]]  # §3-5-6 A
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "step-walker-attention.png"), full_page=True)


@pytest.mark.parametrize("lang", LANGS)
def test_every_page_in_every_language(server, browser, lang):
    phrases = english_catalog_phrases()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    found = {}
    for path, page in zip(PAGES, load_all(browser, [f"{server}/{path}?lang={lang}" for path in PAGES])):
        assert page.locator("[data-testid='stException']").count() == 0, path
        page.screenshot(path=str(ARTIFACTS / f"{lang}-{path or 'run'}.png"), full_page=True)
        text = visible_text(page)
        if lang != "en":
            leaks = [p for p in phrases + STREAMLIT_WORDS if p in text] + english_runs(text) + \
                re.findall(r"View \d+ more", text) + formula_leaks(formula_text(page))
            if leaks:
                found[path or "run"] = leaks[:5]
        else:
            assert catalog("en")[f"app.nav_{path or 'run'}"] in text
        page.close()
    assert not found, f"English interface text in {lang}: {found}"


FORMULA_RECORDS = ["tokens", "rope.inv_freq", "rope.attention_factor", "layers.0.attn.mask", "sample.0.masked_logits",
                   "sample.0.token_id", "decode.1.layers.0.attn.k_cache"]


@pytest.mark.parametrize("lang", ["zh-Hans", "zh-Hant"])
def test_step_walker_draws_the_formulas_words_in_chinese(server, browser, traces, lang):
    from tracer.i18n import t
    from tracer.traces.schema import latex_key, latex_words

    info = load_trace(traces / "toy-dense.npz").info
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    urls = [f"{server}/steps?record={name}&lang={lang}" for name in FORMULA_RECORDS]
    for name, page in zip(FORMULA_RECORDS, load_all(browser, urls)):
        page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
        assert page.locator("[data-testid='stException']").count() == 0, name
        assert page.locator(".katex-error").count() == 0, name  # KaTeX drew the formula, CJK in \text{} included
        drawn, seen = formula_text(page), visible_text(page)  # seen: what the Chinese-mode checks read
        words = latex_words(info[name]["op"])
        assert words, name
        for word in words:
            chinese = t(latex_key(word), lang)
            assert re.sub(r"\s", "", chinese) in re.sub(r"\s", "", drawn), (name, chinese, drawn)
            assert chinese.split()[-1] in seen, name
        assert not formula_leaks(drawn), (name, drawn)
        page.screenshot(path=str(ARTIFACTS / f"{lang}-formula-{name}.png"))
        page.close()


DRAWN = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(g =>
    g.querySelectorAll(`.heatmaplayer image, .imagelayer image, .barlayer .point, .scatterlayer .point,
        .scatterlayer .js-line`).length)"""


def test_full_vocabulary_trace_every_figure_is_drawn(full_server, browser, traces):
    # the pages with figures on a dense trace; the step walker on the LM head's [T, 151936] logits
    paths = ["pipeline", "steps?record=logits", "attention", "rope", "sampling"]
    for path, page in zip(paths, load_all(browser, [f"{full_server}/{path}" for path in paths])):
        assert page.locator("[data-testid='stException']").count() == 0, path
        counts = page.evaluate(DRAWN)
        assert counts and all(n > 0 for n in counts), (path, counts)
        text = visible_text(page)
        assert str(traces) not in text and "Traceback" not in text, path
        page.screenshot(path=str(ARTIFACTS / f"full-{re.sub(r'[?=]', '-', path)}.png"), full_page=True)
        page.close()


def test_full_vocabulary_trace_last_record_and_decode_attention(full_server, browser):
    page = load(browser, f"{full_server}/steps?record=sample.2.token_id")
    page.get_by_text("sample.2.token_id", exact=True).first.wait_for(timeout=60_000)
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()
    page = load(browser, f"{full_server}/attention")
    page.locator("[data-testid='stSelectbox']").first.click()
    page.get_by_role("option", name="decode 2").click()
    page.get_by_text("decode step 2", exact=False).first.wait_for(timeout=60_000)
    settle(page)
    bars = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
        .map(g => g.querySelectorAll('.barlayer .point').length).filter(n => n > 0)""")
    assert bars == [16]  # scores and weights: 6 prompt tokens + 2 generated, each
    page.screenshot(path=str(ARTIFACTS / "full-decode-attention.png"), full_page=True)


@pytest.fixture(scope="module")
def quant_runs(traces):
    """A small checkpoint's reference run and its Q8_0 and Q4_K runs on the same tokens."""
    pytest.importorskip("gguf")
    from tests.quant_runs import make_quant_runs

    (traces / "quant").mkdir()
    return make_quant_runs(traces / "quant")


@pytest.fixture(scope="module")
def quant_server(quant_runs):
    yield from serving(quant_runs / "ref.npz")


def english_leaks(text: str) -> list[str]:
    """English interface text in what a Chinese page shows."""
    return [p for p in english_catalog_phrases() + STREAMLIT_WORDS if p in text] + english_runs(text)


@pytest.mark.parametrize("lang", ["zh-Hans", "zh-Hant"])
def test_vision_and_quant_pages_with_their_data_in_chinese(quant_server, quant_runs, browser, lang, tmp_path):
    zh = catalog(lang)
    upload = "[data-testid='stFileUploader'] input[type='file']"
    # Vision, on a text trace: a file that is not a picture is refused in the page's language
    page = load(browser, f"{quant_server}/vision?lang={lang}")
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    page.locator(upload).set_input_files(str(tmp_path / "broken.png"))
    page.locator("[data-testid='stAlertContentError']").first.wait_for(timeout=60_000)
    assert zh["vision.trace_failed"].split("{")[0] in page.locator("[data-testid='stAlertContentError']").inner_text()
    # ... and its demo button traces qwen3-vl-tiny in this session: six figures, all in the page's language
    page.get_by_role("button", name=zh["vision.demo_button"]).click()
    page.locator(".js-plotly-plot").nth(5).wait_for(timeout=120_000)
    settle(page)
    assert page.locator("[data-testid='stException']").count() == 0
    counts = page.evaluate(DRAWN)
    assert len(counts) == 6 and all(n > 0 for n in counts), counts
    text = visible_text(page)
    assert zh["vision.legend_image"] in text and zh["vision.fig_mrope_grid"] in text
    assert english_leaks(text) == [], english_leaks(text)
    page.screenshot(path=str(ARTIFACTS / f"{lang}-vision-demo.png"), full_page=True)
    page.close()
    # Quantization drift: the two quantized runs uploaded against the open reference
    page = load(browser, f"{quant_server}/quant?lang={lang}")
    page.locator(upload).set_input_files([str(quant_runs / "Q8_0.npz"), str(quant_runs / "Q4_K.npz")])
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    settle(page)
    assert page.locator("[data-testid='stException']").count() == 0
    layers = int(load_trace(quant_runs / "ref.npz").meta["config"]["num_hidden_layers"])
    points = page.locator(".js-plotly-plot .scatterlayer .point").count()
    assert points == 2 * (layers + 1)  # each run: every layer's output, then the logits
    text = visible_text(page)
    assert zh["sources.app_title"] in text and zh["sources.drift_axis_stage"] in text
    assert zh["sources.app_drift_table"] in text
    buttons = page.evaluate("""() => Array.from(
        document.querySelectorAll("[data-testid='stFileUploaderDropzone'] button")).map(b =>
            [b.closest("[data-testid='stFileChipDeleteBtn']") !== null, getComputedStyle(b, '::after').content])""")
    # the browse button reads the catalog's word; the two chosen files' remove buttons keep their icon
    assert [content for chip, content in buttons if not chip] == [f'"{zh["app.uploader_browse"]}"']
    assert [content for chip, content in buttons if chip] == ["none", "none"]
    assert english_leaks(text) == [], english_leaks(text)
    page.screenshot(path=str(ARTIFACTS / f"{lang}-quant-runs.png"), full_page=True)
    page.close()
