"""Long context: RoPE scaling and sliding windows against transformers (its init functions, its traced forward
through the torch backend, and its own untraced logits), and the one-line errors for bad long-context input."""

import json

import numpy as np
import pytest

from tracer import TracerError
from tracer.cli import main
from tracer.commands.run import load_model, run_trace
from tracer.engine.longctx import RopeScaling, layer_window, rope_frequencies
from tracer.sources.config import Qwen3Config
from tracer.sources.presets import QWEN3_0_6B
from tracer.traces.compare import compare_traces, first_divergence

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402

TINY = ["num_hidden_layers=2", "hidden_size=64", "head_dim=16", "intermediate_size=96", "vocab_size=300",
        "num_attention_heads=4", "num_key_value_heads=2", "rope_theta=10000"]
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}


def hf_init(cfg: Qwen3Config, seq_len=None):
    """transformers' own inv_freq and attention factor for this config (its ROPE_INIT_FUNCTIONS)."""
    from tracer.backends.torch_backend import hf_config

    hf = hf_config(cfg)
    inv, a = ROPE_INIT_FUNCTIONS[hf.rope_parameters["rope_type"]](hf, "cpu", seq_len=seq_len)
    return inv.double().numpy(), float(a)


@pytest.mark.parametrize("scaling, seq_len", [
    (YARN, None),
    (dict(YARN, truncate=False), None),
    (dict(YARN, beta_fast=16, beta_slow=2, attention_factor=1.25), None),
    (dict(YARN, factor=8.0, mscale=1.0, mscale_all_dim=0.5), None),
    ({"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 4096}, None),
    ({"rope_type": "linear", "factor": 4.0}, None),
    ({"rope_type": "dynamic", "factor": 2.0}, 100_000),
    ({"rope_type": "dynamic", "factor": 4.0}, 40_000),
])
def test_frequencies_equal_transformers_init_functions(scaling, seq_len):
    cfg = QWEN3_0_6B.replace(rope_scaling=scaling)
    ours, a = rope_frequencies(cfg, seq_len or 1)
    theirs, b = hf_init(cfg, seq_len)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert abs(a - b) <= 1e-6 * b


def test_yarn_numbers_of_the_notes():
    """long-context notes §1 (Qwen3-0.6B, YaRN x4 over 32768): pairs 0-23 keep ω, 40-63 are divided by 4,
    a = 0.1·ln 4 + 1, the default/yarn ratio is 1.0462 at pair 24 and 3.4000 at pair 39."""
    inv, a = rope_frequencies(QWEN3_0_6B.replace(rope_scaling=YARN), 1)
    default, _ = rope_frequencies(QWEN3_0_6B, 1)
    ratio = default / inv
    np.testing.assert_allclose(ratio[:24], 1.0)
    np.testing.assert_allclose(ratio[40:], 4.0)
    assert round(ratio[24], 4) == 1.0462 and round(ratio[39], 4) == 3.4 and round(a, 10) == 1.1386294361
    np.testing.assert_allclose(inv[-4:], [5.9284343e-07, 4.7773824e-07, 3.8498163e-07, 3.1023444e-07], rtol=1e-7)


def test_dynamic_ntk_numbers_of_the_notes():
    """Notes §1: d = 8, θ = 1e4, max_pos 64, factor 2; L = 64 unchanged, L = 100 -> θ' = 27319.87."""
    cfg = Qwen3Config(vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                      num_key_value_heads=1, head_dim=8, max_position_embeddings=64, rope_theta=1e4,
                      rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    np.testing.assert_allclose(rope_frequencies(cfg, 64)[0], [1, 0.1, 0.01, 0.001])
    np.testing.assert_allclose(rope_frequencies(cfg, 100)[0], [1, 0.07778, 0.00605, 0.000471], rtol=1e-3)
    assert round(1 / rope_frequencies(cfg, 100)[0][1] ** 4, 2) == 27319.87  # ω₁ = θ'^(−1/4)


def _trace(overrides, tokens, backend, steps=3):
    model = load_model("qwen3-0.6b", overrides, seed=3)
    return model, run_trace(model, tokens, max_new_tokens=steps, backend=backend)


def _hf_logits(model, tokens):
    """transformers' own forward (default attention, no hooks) on the same weights."""
    from tracer.backends.torch_backend import build_model

    hf = build_model(model.cfg, model.weights, None, "float32", "cpu", traced=False)
    with torch.no_grad():
        return hf(input_ids=torch.tensor([tokens])).logits[0].numpy()


def _parity(overrides, tokens, steps=3):
    model, a = _trace(overrides, tokens, "numpy", steps)
    _, b = _trace(overrides, tokens, "torch", steps)
    rows = compare_traces(a, b)
    assert [r for r in rows if r.verdict == "MISSING"] == []
    assert all(r.verdict == "OK" for r in rows), f"first divergence {first_divergence(rows)}"
    np.testing.assert_allclose(a["logits"], _hf_logits(model, tokens), rtol=1e-4, atol=1e-4)
    return a, b


@pytest.mark.parametrize("scaling", [
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8},
    {"rope_type": "linear", "factor": 2.0},
    {"rope_type": "dynamic", "factor": 2.0},
])
def test_forward_beyond_the_original_window_matches_torch_and_transformers(scaling):
    """Prompt of 20 tokens + 3 decode steps: past the original window of 8 (yarn) / max_position_embeddings 16."""
    max_pos = 16 if scaling["rope_type"] == "dynamic" else 64
    overrides = TINY + [f"max_position_embeddings={max_pos}", f"rope_scaling={json.dumps(scaling)}"]
    tokens = [(7 * i + 3) % 300 for i in range(20)]
    a, b = _parity(overrides, tokens)
    inv, factor = rope_frequencies(load_model("qwen3-0.6b", overrides).cfg, 20)
    np.testing.assert_allclose(a["rope.inv_freq"], inv, rtol=1e-6)
    assert float(a["rope.attention_factor"]) == pytest.approx(factor)
    if scaling["rope_type"] == "yarn":
        assert float(b["rope.attention_factor"]) == pytest.approx(0.1 * np.log(4) + 1)
    if scaling["rope_type"] == "dynamic":  # each decode step grows θ' (the table of the current length)
        assert a["decode.2.rope.inv_freq"][1] < a["decode.1.rope.inv_freq"][1] < a["rope.inv_freq"][1]
        np.testing.assert_allclose(b["decode.2.rope.inv_freq"], rope_frequencies(
            load_model("qwen3-0.6b", overrides).cfg, 22)[0], rtol=1e-6)


def test_dynamic_ntk_crossing_the_window_during_decode():
    """Prompt of 14 with max_position_embeddings 16: the original table until length 16, then a new θ' in every
    decode step, while the cached keys keep the angles they were rotated with (transformers does the same)."""
    overrides = TINY + ["max_position_embeddings=16", 'rope_scaling={"rope_type":"dynamic","factor":2.0}']
    a, _ = _parity(overrides, [(5 * i + 1) % 300 for i in range(14)], steps=5)
    np.testing.assert_array_equal(a["decode.2.rope.inv_freq"], a["rope.inv_freq"])  # length 16: unchanged
    assert a["decode.4.rope.inv_freq"][1] < a["decode.3.rope.inv_freq"][1] < a["rope.inv_freq"][1]


def test_sliding_window_matches_torch_and_transformers_in_prefill_and_decode():
    overrides = TINY + ["num_hidden_layers=3", "use_sliding_window=true", "sliding_window=4", "max_window_layers=1"]
    tokens = [5, 17, 3, 99, 42, 7, 11, 250]
    a, b = _parity(overrides, tokens)
    visible = lambda m: (m > -1e30).sum(axis=-1).tolist()  # noqa: E731
    assert visible(a["layers.0.attn.mask"]) == [1, 2, 3, 4, 5, 6, 7, 8]  # layer 0 < max_window_layers: full
    assert visible(a["layers.1.attn.mask"]) == [1, 2, 3, 4, 4, 4, 4, 4]  # keys t−3..t
    assert a["decode.2.layers.1.attn.mask"].shape == (1, 4) and a["decode.2.layers.0.attn.mask"].shape == (1, 10)
    assert a.info["layers.1.attn.mask"]["op"] == "sliding_window_mask"


def test_layer_types_and_moe_follow_transformers():
    cfg = load_model("qwen3-0.6b", TINY + ["num_hidden_layers=3", "use_sliding_window=true", "sliding_window=2",
                                           'layer_types=["sliding_attention","full_attention","sliding_attention"]']).cfg
    assert [layer_window(cfg, i) for i in range(3)] == [2, None, 2]
    assert [layer_window(cfg.replace(use_sliding_window=False, layer_types=None), i) for i in range(3)] == [None] * 3
    moe = TINY + ["num_experts=4", "num_experts_per_tok=2", "moe_intermediate_size=32", "use_sliding_window=true",
                  "sliding_window=3", "max_window_layers=1"]
    a, _ = _parity(moe, [5, 17, 3, 99, 42, 7], steps=2)
    assert (a["layers.0.attn.mask"] > -1e30).sum(axis=-1).tolist() == [1, 2, 3, 3, 3, 3]  # every MoE layer slides


def test_config_json_spellings():
    hub = dict(QWEN3_0_6B.to_hf_dict(), max_position_embeddings=131072, rope_scaling=dict(YARN, type="yarn"))
    v5 = {k: v for k, v in hub.items() if k not in ("rope_scaling", "rope_theta")}
    v5["rope_parameters"] = dict(YARN, rope_theta=1e6)
    a, b = Qwen3Config.from_hf_dict(hub), Qwen3Config.from_hf_dict(v5)
    assert a == b and a.rope_scaling == RopeScaling("yarn", 4.0, 32768) and b.rope_theta == 1e6
    assert Qwen3Config.from_hf_dict(a.to_hf_dict()) == a


@pytest.mark.parametrize("setting, field", [
    ('rope_scaling={"rope_type":"ntk-by-parts","factor":2}', "rope_scaling.rope_type"),
    ('rope_scaling={"rope_type":"yarn","factor":1.0,"original_max_position_embeddings":8}', "rope_scaling.factor"),
    ('rope_scaling={"rope_type":"yarn","factor":0.5,"original_max_position_embeddings":8}', "rope_scaling.factor"),
    ('rope_scaling={"rope_type":"yarn","factor":4}', "rope_scaling.original_max_position_embeddings"),
    ('rope_scaling={"rope_type":"yarn","factor":NaN,"original_max_position_embeddings":8}', "rope_scaling.factor"),
    ('rope_scaling={"rope_type":"linear","factor":Infinity}', "rope_scaling.factor"),
    ('rope_scaling={"rope_type":"yarn","factor":4,"original_max_position_embeddings":8,"beta_fast":NaN}',
     "rope_scaling.beta_fast"),
    ("rope_scaling=yarn", "rope_scaling"),
    ('rope_scaling={"rope_type":"yarn","factr":4}', "rope_scaling.factr"),
    ("sliding_window=0", "sliding_window"),
    ("sliding_window=-4", "sliding_window"),
    ('layer_types=["sliding_attention","full_attention"]', "layer_types"),
])
def test_bad_long_context_input_is_one_line_naming_the_field(capsys, setting, field):
    assert main(["info", "qwen3-0.6b", "--set", "num_hidden_layers=2", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tracer: error: ") and field in err and "Traceback" not in err


def test_bad_config_json_names_rope_parameters():
    d = dict(QWEN3_0_6B.to_hf_dict(), rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6})
    with pytest.raises(TracerError, match="rope_parameters.original_max_position_embeddings is missing"):
        Qwen3Config.from_hf_dict(d)


def test_set_rope_parameters_spelling(capsys):
    cfg = QWEN3_0_6B.with_overrides(['rope_parameters={"rope_type":"dynamic","factor":2,"rope_theta":5e5}'])
    assert cfg.rope_scaling == RopeScaling("dynamic", 2.0) and cfg.rope_theta == 5e5
    assert main(["info", "qwen3-0.6b", "--set", 'rope_parameters={"rope_type":"yarn","factor":2}']) == 2
    assert "rope_parameters.original_max_position_embeddings" in capsys.readouterr().err


def test_exported_checkpoint_loads_in_transformers_with_the_same_scaling_and_window(tmp_path):
    """config.json written by tracer export is read by transformers' from_pretrained with the same YaRN block
    and sliding layers, and both backends agree on that directory."""
    scaling = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8, "beta_fast": 16.0}
    overrides = TINY + ["max_position_embeddings=64", f"rope_scaling={json.dumps(scaling)}",
                        "use_sliding_window=true", "sliding_window=5", "max_window_layers=1"]
    directory = tmp_path / "ckpt"
    assert main(["export", "qwen3-0.6b", *sum((["--set", o] for o in overrides), []), "--out", str(directory)]) == 0
    hf = transformers.AutoConfig.from_pretrained(str(directory))
    assert {k: hf.rope_parameters[k] for k in scaling} == scaling and hf.layer_types == [
        "full_attention", "sliding_attention"] and hf.sliding_window == 5
    tokens = list(range(3, 23))
    traces = [run_trace(load_model(str(directory)), tokens, max_new_tokens=2, backend=b) for b in ("numpy", "torch")]
    rows = compare_traces(*traces)
    assert rows and all(r.verdict == "OK" for r in rows), first_divergence(rows)


def test_long_context_trace_round_trips_through_a_file(tmp_path):
    from tracer.traces.tracefile import load_trace, save_trace

    overrides = TINY + ["max_position_embeddings=64", "use_sliding_window=true", "sliding_window=3",
                        "max_window_layers=1", 'rope_scaling={"rope_type":"yarn","factor":2.0,'
                                               '"original_max_position_embeddings":8}']
    _, trace = _trace(overrides, list(range(1, 13)), "numpy", steps=3)
    back = load_trace(save_trace(tmp_path / "t.npz", trace))
    assert back.names == trace.names
    for name in trace.names:
        np.testing.assert_array_equal(back[name], trace[name], err_msg=name)
    assert back.meta["config"]["rope_scaling"]["rope_type"] == "yarn" and back.meta["config"]["sliding_window"] == 3
