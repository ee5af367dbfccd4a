"""The "why" pages in headless Chromium on a full-vocabulary trace (Qwen3's 151,936 tokens, a narrow model):
no page raises, the lens grid is drawn with real token text, and the What-if page runs an intervention."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("playwright.sync_api")

from tests.test_browser import ARTIFACTS, CHROMIUM, launched, serving  # noqa: E402

NARROW = ["num_hidden_layers=3", "hidden_size=64", "head_dim=16", "intermediate_size=96", "num_attention_heads=4",
          "num_key_value_heads=2"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (bash .ci/run installs it)")
    tmp = tmp_path_factory.mktemp("why-browser")
    trace = tmp / "full-vocab.npz"
    subprocess.run([sys.executable, "-m", "tracer.cli", "trace", "qwen3-0.6b", "--prompt", "The capital of France is",
                    *sum((["--set", o] for o in NARROW), []), "--max-new-tokens", "2", "--out", str(trace)],
                   check=True, capture_output=True)
    for url in serving(trace):
        yield url, trace


@pytest.fixture(scope="module")
def browser(server):
    yield from launched()


def _open(browser, url, path):
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(f"{url}/{path}")
    page.locator("h1").first.wait_for(timeout=60_000)
    page.wait_for_load_state("networkidle")
    return page


@pytest.mark.parametrize("path", ["lens", "heads", "prompts", "whatif"])
def test_why_pages_in_the_browser(server, browser, path):
    url, _ = server
    page = _open(browser, url, path)
    assert page.locator("[data-testid='stException']").count() == 0
    if path == "lens":
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        assert page.locator(".js-plotly-plot").count() >= 3
        grid = page.locator(".js-plotly-plot").first.inner_text()
        assert "Logit lens" in grid and "The" in grid  # token text from the trace, not bare ids
    if path == "heads":
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{path}.png"), full_page=True)


def test_what_if_runs_in_the_browser(server, browser):
    url, _ = server
    page = _open(browser, url, "whatif")
    page.get_by_label("Zero these heads (layer.head, comma separated)").fill("1.2")
    page.get_by_role("button", name="Run").click()
    page.get_by_text("records changed; the first is layers.1.attn.context").wait_for(timeout=90_000)
    assert page.locator("[data-testid='stException']").count() == 0
    page.screenshot(path=str(ARTIFACTS / "page-whatif-run.png"), full_page=True)
