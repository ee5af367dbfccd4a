"""The explorer's Training page, driven by AppTest: a step it runs itself, an opened train-step trace, DPO, errors."""


import numpy as np
import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")
from tests.apptest import open_explorer  # noqa: E402

from tracer.commands.run import load_model  # noqa: E402
from tracer.commands.train_run import dpo_step, train_step  # noqa: E402
from tracer.engine.train import Optimizer  # noqa: E402
from tracer.i18n import t as catalog_text  # noqa: E402
from tracer.traces.tracefile import save_trace  # noqa: E402



def training_page(monkeypatch, trace=None):
    return open_explorer(monkeypatch, trace, "training")


def test_runs_a_step_on_the_toy_and_shows_every_section(monkeypatch):
    at = training_page(monkeypatch)
    assert at.title[0].value == "Training"
    assert [s.value for s in at.subheader] == ["Loss per token", "Gradients flowing back",
                                                "One weight matrix before and after", "DPO: the preference pair",
                                                "Seed 001 errata"]
    loss_table = at.table[0].value
    assert list(loss_table["counted?"]) == ["counted"] * 3 + ["masked: the last position has no next token"]
    # seed 004's logits of <bos>: −log softmax at the target 明天, computed here from the printed logits row
    model = load_model("toy-dense")
    expected = train_step(model, [0, 1, 2, 3])["train.token_loss"]
    np.testing.assert_allclose(loss_table["loss"].astype(float), np.round(expected, 4))
    dpo = at.table[1].value
    assert list(dpo["answer"]) == ["chosen", "rejected"]
    assert "交叉熵MSE" in at.table[2].value.iloc[0, 0]
    assert not at.error


def test_controls_and_a_bad_prompt(monkeypatch):
    at = training_page(monkeypatch)
    at.selectbox(key="train_model").set_value("toy-moe").run()
    assert not at.exception and any("load-balancing" in c.value for c in at.caption)
    at.text_input(key="train_prompt").set_value("hello").run()
    assert "not in the toy vocabulary" in at.error[0].value


def test_opened_train_step_and_dpo_traces(monkeypatch, tmp_path):
    model = load_model("toy-moe")
    path = save_trace(tmp_path / "s.npz", train_step(model, [0, 1, 2, 3, 4], optimizer=Optimizer("sgd", 0.1),
                                                     steps=2))
    at = training_page(monkeypatch, str(path))
    assert len(at.table[0].value) == 5 and not at.error
    pair = {"prompt": "明天", "chosen": "交報告", "rejected": "請"}
    path = save_trace(tmp_path / "d.npz", dpo_step(load_model("toy-dense"), pair))
    at = training_page(monkeypatch, str(path))
    assert at.subheader[0].value == "One weight matrix before and after"
    assert float(at.table[0].value["log π"][0]) == pytest.approx(float(np.load(path)["dpo.chosen.logp"]), abs=1e-5)


def test_chinese(monkeypatch):
    at = training_page(monkeypatch)
    next(r for r in at.radio if r.key == "lang_choice").set_value("zh-Hans").run()  # en, zh-Hans or zh-Hant
    assert at.title[0].value == "训练"
    assert not at.exception


def test_every_page_opens_a_train_step_trace(monkeypatch, tmp_path):
    pair = {"prompt": "明天", "chosen": "交報告", "rejected": "請"}
    path = save_trace(tmp_path / "d.npz", dpo_step(load_model("toy-dense"), pair))
    at = training_page(monkeypatch, str(path))
    for page in ("run", "pipeline", "steps", "attention", "rope", "moe", "sampling", "tokens", "compare"):
        at.switch_page(f"views/{page}.py")
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert at.title[0].value == catalog_text(f"app.nav_{page}", "en")
