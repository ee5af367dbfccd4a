"""The running explorer in headless Chromium: the step walker shows seed 004's attention matrix A.

Chromium comes from Debian's ``chromium`` package, which the project's setup (``.ci/run``) installs; the
screenshots of every page are kept in ``artifacts/screenshots/``.
"""

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PAGES = ["", "pipeline", "steps", "attention", "rope", "moe", "sampling", "tokens", "compare", "long_context"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (bash .ci/run installs it)")
    tmp = tmp_path_factory.mktemp("browser")
    trace = tmp / "toy-dense.npz"
    subprocess.run([sys.executable, "-m", "tracer.cli", "trace", "toy-dense", "--prompt", "明天交報告", "--out",
                    str(trace)], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tracer.cli", "app", str(trace), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the explorer did not start within 90 s")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser(server):
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_step_walker_shows_the_attention_matrix_of_seed_004(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(f"{server}/steps?record=layers.0.attn.probs")
    page.get_by_text("layers.0.attn.probs", exact=True).first.wait_for(timeout=60_000)
    table = page.locator("table").first
    table.wait_for(timeout=60_000)
    rows = [[c.strip() for c in row.locator("td").all_inner_texts()] for row in table.locator("tbody tr").all()]
    numbers = [r[-4:] for r in rows]
    assert numbers == [["1.000", "0.000", "0.000", "0.000"], ["0.230", "0.770", "0.000", "0.000"],
                       ["0.130", "0.435", "0.435", "0.000"], ["0.454", "0.136", "0.136", "0.275"]]  # §3-5-6 A
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "step-walker-attention.png"), full_page=True)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_in_the_browser(server, browser, path):
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.goto(f"{server}/{path}")
    page.locator("h1").first.wait_for(timeout=60_000)
    page.wait_for_load_state("networkidle")
    assert page.locator("[data-testid='stException']").count() == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{path or 'run'}.png"), full_page=True)
