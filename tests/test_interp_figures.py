"""The "why" figures read the records they claim to show (no Streamlit needed)."""

import numpy as np
import pytest

pytest.importorskip("plotly")

from tracer.figures.interp import (attribution_terms, head_view, heads_grid, lens_grid, prompt_diff,  # noqa: E402
                                   stream_stats, token_text)
from tracer.commands.run import load_model, run_trace  # noqa: E402

SMALL = ["num_hidden_layers=3", "hidden_size=32", "head_dim=8", "intermediate_size=48", "vocab_size=120",
         "num_attention_heads=4", "num_key_value_heads=2"]


@pytest.fixture(scope="module")
def pair():
    model = load_model("qwen3-0.6b", SMALL, seed=4)
    return run_trace(model, [5, 6, 7, 8, 9]), run_trace(model, [5, 6, 70, 71, 9])


def test_stream_stats_are_norms_and_cosines_of_the_records(pair):
    a, _ = pair
    stats = stream_stats(a)
    np.testing.assert_allclose(stats["stream"][1], np.linalg.norm(a["layers.1.resid_post"], axis=-1), rtol=1e-6)
    write, before = a["layers.2.attn.o_proj"][3].astype(np.float64), a["layers.1.resid_post"][3].astype(np.float64)
    cos = write @ before / np.linalg.norm(write) / np.linalg.norm(before)
    assert stats["attn_cos"][2, 3] == pytest.approx(cos, rel=1e-6)


def test_lens_grid_shows_the_top_token_and_its_probability(pair):
    a, _ = pair
    fig = lens_grid(a)
    heat = fig.data[0]
    np.testing.assert_allclose(np.asarray(heat.z), np.stack([a[f"lens.{i}.top_probs"][:, 0] for i in range(3)]))
    assert heat.customdata[2][4].count("<br>") == 4  # the top 5 on hover
    assert token_text(a, int(a["lens.2.top_ids"][4, 0])) in heat.customdata[2][4]


def test_heads_grid_marks_gqa_groups_and_head_view_lists_every_head(pair):
    a, _ = pair
    fig = heads_grid(a, [0, 2])
    assert len(fig.data) == 2 * 4
    titles = [ann.text for ann in fig.layout.annotations]
    assert titles[:4] == ["L0 h0·kv0", "L0 h1·kv0", "L0 h2·kv1", "L0 h3·kv1"]
    view = head_view(a, 1, 4)
    keys = next(tr for tr in view.data if tr.customdata is not None)
    probs = a["layers.1.attn.probs"][:, 4]
    assert keys.customdata[2] == "<br>".join(f"h{h} (kv{h // 2}) {probs[h, 2]:.3f}" for h in range(4))


def test_prompt_diff_finds_the_first_layer_whose_prediction_differs(pair):
    a, b = pair
    same = prompt_diff(a, a)
    assert same.diverges_at is None and not same.difference.any()
    d = prompt_diff(a, b)
    tops = [(int(a[f"lens.{i}.top_ids"][-1, 0]), int(b[f"lens.{i}.top_ids"][-1, 0])) for i in range(3)]
    expected = next((i for i, (x, y) in enumerate(tops) if x != y), None)
    assert d.diverges_at == expected
    assert np.all(d.difference[:, :2] < 1e-6) and np.all(d.difference[:, 2] > 0)  # same first two tokens


def test_attribution_terms_add_up_to_the_logit(pair):
    a, _ = pair
    terms = attribution_terms(a, 4)
    target = int(a["attrib.target_ids"][4])
    assert sum(v for _, v in terms) == pytest.approx(float(a["logits"][4, target]), rel=1e-4)
    assert len(terms) == 1 + 3 * (4 + 1)
