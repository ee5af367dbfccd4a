"""The explorer's "why" pages (logit lens & attribution, all heads, compare prompts, what if), driven by AppTest."""


import numpy as np
import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")
from tests.apptest import open_explorer  # noqa: E402

from tracer.commands.run import load_model, run_trace  # noqa: E402
from tracer.traces.tracefile import load_trace, save_trace  # noqa: E402

PAGES = {"lens": "Logit lens & attribution", "heads": "All heads", "prompts": "Compare prompts", "whatif": "What if"}
SMALL_MOE = ["num_hidden_layers=3", "hidden_size=32", "head_dim=8", "intermediate_size=48", "vocab_size=120",
             "num_attention_heads=4", "num_key_value_heads=2", "num_experts=4", "num_experts_per_tok=2",
             "moe_intermediate_size=16", "mlp_only_layers=[1]"]


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("why")
    out = {}
    for key, name, overrides, ids in (("toy-dense", "toy-dense", [], [0, 1, 2, 3]),
                                      ("moe", "qwen3-0.6b", SMALL_MOE, [5, 6, 7, 8, 9]),
                                      ("moe-b", "qwen3-0.6b", SMALL_MOE, [5, 6, 70, 8, 9])):
        trace = run_trace(load_model(name, overrides, seed=1), ids, max_new_tokens=2)
        out[key] = str(save_trace(tmp / f"{key}.npz", trace))
    return out


@pytest.fixture(autouse=True)
def traces_dir(monkeypatch, tmp_path_factory):
    """The app opens files only from its traces folder: here, the folder of every test's files."""
    monkeypatch.setenv("QWEN3_TRACER_TRACES_DIR", str(tmp_path_factory.getbasetemp()))


def open_page(monkeypatch, trace, page):
    return open_explorer(monkeypatch, trace, page)


@pytest.mark.parametrize("which", ["toy-dense", "moe"])
def test_every_why_page_renders(monkeypatch, traces, which):
    for page, title in PAGES.items():
        at = open_page(monkeypatch, traces[which], page)
        assert at.title[0].value == title


def test_lens_page_draws_the_grid_stream_and_attribution(monkeypatch, traces):
    at = open_page(monkeypatch, traces["moe"], "lens")
    charts = at.get("plotly_chart")
    assert len(charts) == 4  # lens grid, stream, attribution bars, per-layer attribution
    assert "Logit lens" in charts[0].proto.spec
    prefill = [c.proto.spec for c in charts]
    at.selectbox(key="lens_step").set_value(1).run()  # decode step 1
    assert not at.exception and len(at.get("plotly_chart")) == 4
    decode = [c.proto.spec for c in at.get("plotly_chart")]
    assert all(a != b for a, b in zip(prefill, decode))  # every figure now draws decode step 1's records


def test_compare_prompts_names_the_divergence(monkeypatch, traces):
    at = open_page(monkeypatch, traces["moe"], "prompts")
    at.text_input(key="prompts_path").set_value(traces["moe-b"]).run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "predictions part" in text or "agrees on the top token" in text
    assert len(at.get("plotly_chart")) == 1


def test_what_if_zeroes_a_head_and_reports_changes(monkeypatch, traces):
    routed = load_trace(traces["moe"])["layers.0.moe.topk_ids"]
    expert = int(np.bincount(routed.ravel()).argmax())
    at = open_page(monkeypatch, traces["moe"], "whatif")
    at.text_input(key="whatif_heads").set_value("2.1")
    at.text_input(key="whatif_experts").set_value(f"0.{expert}")
    at.button(key="whatif_run").click().run()
    assert not at.exception and not at.error
    text = " ".join(m.value for m in at.markdown)
    assert "records changed; the first is layers.0.moe.topk_ids" in text
    assert len(at.get("plotly_chart")) == 1


def test_what_if_bad_input_is_a_one_line_error(monkeypatch, traces):
    at = open_page(monkeypatch, traces["moe"], "whatif")
    at.text_input(key="whatif_heads").set_value("9.0")
    at.button(key="whatif_run").click().run()
    assert not at.exception
    assert "layer 9 is out of range" in at.error[0].value and "\n" not in at.error[0].value
    at.text_input(key="whatif_heads").set_value("")
    at.button(key="whatif_run").click().run()
    assert "no intervention chosen" in at.error[0].value


def test_what_if_patches_from_another_prompt(monkeypatch, traces):
    at = open_page(monkeypatch, traces["toy-dense"], "whatif")
    at.selectbox(key="whatif_patch_name").set_value("layers.0.resid_mid")
    # toy vocabulary: 4 tokens, like the open trace
    at.text_input(key="whatif_patch_prompt").set_value("明天交報告")
    at.button(key="whatif_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    # the same prompt gives the same ids, so the patch puts back the value that was there: no value diverges;
    # the edited run leaves out the attribution records, which are counted apart, not as changed
    import re

    compared = [int(m.group(1)) for v in at.markdown if (m := re.search(r"^0 of (\d+) records changed; the first is —$",
                                                                         v.value))]
    only = [int(m.group(1)) for c in at.caption if (m := re.search(r"^(\d+) records exist in only one", c.value))]
    assert compared and only, ([m.value for m in at.markdown], [c.value for c in at.caption])
    assert compared[0] > 0 and only[0] > 0  # the attribution records, of every forward pass of the run
    clean, edited = (m.value for m in at.metric)
    assert clean == edited


def test_compare_prompts_runs_a_second_prompt(monkeypatch, traces):
    at = open_page(monkeypatch, traces["toy-dense"], "prompts")
    at.text_input(key="prompts_other").set_value("明天交報告")  # the same prompt: nothing diverges
    at.run()
    assert not at.exception and not at.error
    assert "agrees on the top token" in " ".join(m.value for m in at.markdown)
