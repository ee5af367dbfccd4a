"""Logit lens, direct logit attribution and interventions: identities, both backends, bad input."""

import json

import numpy as np
import pytest

from tracer import TracerError
from tracer.cli import main
from tracer.commands.run import load_model, run_trace
from tracer.engine.interventions import Interventions
from tracer.sources.weights import lm_head_name
from tracer.traces.compare import compare_traces, first_divergence
from tracer.traces.tracefile import load_trace

TINY = ["num_hidden_layers=3", "hidden_size=64", "head_dim=16", "intermediate_size=96", "vocab_size=300",
        "num_attention_heads=4", "num_key_value_heads=2"]
TINY_MOE = TINY + ["num_experts=8", "num_experts_per_tok=2", "moe_intermediate_size=32", "mlp_only_layers=[1]"]
TOKENS = [5, 17, 3, 99, 42, 7]


def _softmax64(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _trace(overrides=TINY_MOE, backend="numpy", dtype="float32", steps=2, **kw):
    model = load_model("qwen3-0.6b", overrides, seed=2, dtype=dtype)
    return run_trace(model, TOKENS, max_new_tokens=steps, backend=backend, **kw)


def _contributions(trace, prefix=""):
    """Embedding term + every head + every MLP / expert, per position."""
    cfg = trace.meta["config"]
    total = np.asarray(trace[prefix + "attrib.embed"], dtype=np.float64).copy()
    for i in range(cfg["num_hidden_layers"]):
        total += trace[f"{prefix}attrib.{i}.heads"].sum(axis=0)
        mlp = f"{prefix}attrib.{i}.mlp"
        total += trace[mlp] if mlp in trace else trace[f"{prefix}attrib.{i}.experts"].sum(axis=0)
    return total


# -- logit lens --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_last_lens_is_the_output(backend):
    if backend == "torch":
        pytest.importorskip("torch")
    trace = _trace(backend=backend)
    for prefix in ("", "decode.1."):
        logits = trace[prefix + "logits"]
        ids, probs = trace[prefix + "lens.2.top_ids"], trace[prefix + "lens.2.top_probs"]
        assert ids.shape == (len(logits), 20) and ids.dtype == np.int64
        expected = np.argsort(-logits.astype(np.float64), axis=-1, kind="stable")[:, :20]
        np.testing.assert_array_equal(ids, expected)
        np.testing.assert_allclose(probs, np.take_along_axis(_softmax64(logits), expected, axis=-1), rtol=1e-5)
    assert "lens.0.logits" not in trace and "lens.0.top_ids" in trace


def test_full_lens_logits_only_when_captured():
    trace = _trace(capture=["lens.*", "logits", "layers.*.resid_post"])
    np.testing.assert_array_equal(trace["lens.2.logits"], trace["logits"])
    # an earlier block's lens: its stream through the final norm and head, computed here in float64
    cfg = load_model("qwen3-0.6b", TINY_MOE, seed=2)
    x = trace["layers.0.resid_post"].astype(np.float64)
    normed = x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg.cfg.rms_norm_eps) * cfg.weights["model.norm.weight"]
    np.testing.assert_allclose(trace["lens.0.logits"], normed @ cfg.weights[lm_head_name(cfg.cfg)].T, rtol=1e-4, atol=1e-5)
    assert not any(n.startswith("attrib.") for n in trace.names)  # not captured: not computed


def test_one_layers_attribution_alone():
    trace = _trace(capture=["attrib.2.*"])
    assert trace.names == ["attrib.2.heads", "attrib.2.experts"]
    np.testing.assert_array_equal(trace["attrib.2.heads"], _trace()["attrib.2.heads"])


def test_lens_is_not_computed_when_not_captured():
    trace = _trace(capture=["logits"])
    assert trace.names == ["logits"]


# -- direct logit attribution ------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [TINY, TINY_MOE], ids=["dense", "moe"])
def test_attribution_sums_to_the_logit(overrides):
    trace = _trace(overrides, dtype="float64")
    for prefix in ("", "decode.1."):
        logits = trace[prefix + "logits"]
        target = trace[prefix + "attrib.target_ids"]
        np.testing.assert_array_equal(target, logits.argmax(axis=-1))
        chosen = logits[np.arange(len(target)), target]
        np.testing.assert_allclose(_contributions(trace, prefix), chosen, rtol=1e-10, atol=1e-12)
    if overrides is TINY_MOE:  # an expert not routed to a token contributes nothing there
        gates = trace["layers.0.moe.gates"]
        assert np.all(trace["attrib.0.experts"][gates.T == 0] == 0)


def test_attribution_of_a_head_through_the_frozen_norm():
    """One head's term by hand: its slice of o_proj's output, times the final norm weight and the LM head row of
    the target, times the frozen 1/rms of the last block's output."""
    model = load_model("qwen3-0.6b", TINY, seed=2, dtype="float64")
    trace = run_trace(model, TOKENS)
    w = model.weights
    h, t, dh = 3, 4, 16
    c = trace["attrib.target_ids"][t]
    write = trace["layers.1.attn.context"][h, t] @ w["model.layers.1.self_attn.o_proj.weight"][:, h * dh:(h + 1) * dh].T
    x = trace["layers.2.resid_post"][t]
    u = w["model.norm.weight"] * w[lm_head_name(model.cfg)][c] / np.sqrt(np.mean(x * x) + model.cfg.rms_norm_eps)
    assert trace["attrib.1.heads"][h, t] == pytest.approx(write @ u, rel=1e-10)


def test_toy_without_final_norm_sums_to_the_logit():
    model = load_model("toy-moe", dtype="float64")
    trace = run_trace(model, [0, 1, 2, 3])
    chosen = trace["logits"][np.arange(4), trace["attrib.target_ids"]]
    np.testing.assert_allclose(_contributions(trace), chosen, rtol=1e-10, atol=1e-12)
    assert "attrib.scale" not in trace


# -- interventions -----------------------------------------------------------------------------------


def _expert_most_routed(trace, layer):
    ids = trace[f"layers.{layer}.moe.topk_ids"]
    return int(np.bincount(ids.ravel()).argmax())


def test_dropped_expert_is_never_routed_to():
    clean = _trace(steps=3)
    e = _expert_most_routed(clean, 2)
    dropped = _trace(steps=3, interventions=Interventions(drop_experts=((2, e),)))
    for name in dropped.names:
        if name.endswith("layers.2.moe.topk_ids"):
            assert e not in dropped[name]
    assert not any(n.endswith(f"layers.2.moe.experts.{e}.token_ids") for n in dropped.names)
    assert dropped.meta["interventions"]["drop_experts"] == [f"2.{e}"]
    np.testing.assert_array_equal(dropped["layers.2.moe.router_probs"], clean["layers.2.moe.router_probs"])
    rows = compare_traces(clean, dropped)
    assert first_divergence(rows).name in ("layers.2.moe.topk_ids", "layers.2.moe.topk_weights")


@pytest.mark.parametrize("case", ["zero-head", "drop-expert", "patch"])
def test_interventions_agree_between_backends(case, tmp_path):
    pytest.importorskip("torch")
    clean = _trace()
    if case == "zero-head":
        iv = Interventions(zero_heads=((1, 2), (0, 0)))
    elif case == "drop-expert":
        iv = Interventions(drop_experts=((0, _expert_most_routed(clean, 0)),))
    else:  # activation patching: block 0's output and a context from another prompt
        other = run_trace(load_model("qwen3-0.6b", TINY_MOE, seed=2), [8, 1, 30, 2, 2, 9], max_new_tokens=2)
        iv = Interventions(patches=(("layers.0.resid_post", np.array(other["layers.0.resid_post"])),
                                    ("decode.1.layers.1.attn.context", np.array(other["decode.1.layers.1.attn.context"]))),
                           patch_files=("a.npy", "b.npy"))
    a, b = _trace(interventions=iv), _trace(backend="torch", interventions=iv)
    rows = compare_traces(a, b)
    bad = [r for r in rows if r.verdict != "OK"]
    assert not bad, bad[:3]
    assert first_divergence(compare_traces(clean, a)) is not None
    if case == "zero-head":
        assert np.all(a["layers.1.attn.context"][2] == 0) and np.all(b["decode.1.layers.0.attn.context"][0] == 0)
    if case == "patch":
        np.testing.assert_array_equal(b["layers.0.resid_post"], iv.patches[0][1])
        assert not any(n.startswith("attrib.") for n in a.names)  # the stream is no longer the sum of its writes


def test_a_patched_kv_cache_is_what_later_decode_steps_attend_to():
    clean = _trace(steps=4)
    zeros = np.zeros_like(clean["decode.1.layers.0.attn.k_cache"])
    ones = np.ones_like(clean["decode.1.layers.0.attn.v_cache"])
    iv = Interventions(patches=(("decode.1.layers.0.attn.k_cache", zeros), ("decode.1.layers.0.attn.v_cache", ones)),
                       patch_files=("k.npy", "v.npy"))
    patched = _trace(steps=4, interventions=iv)
    held = zeros.shape[1]
    for step in (2, 3):
        np.testing.assert_array_equal(patched[f"decode.{step}.layers.0.attn.k_cache"][:, :held], zeros)
        np.testing.assert_array_equal(patched[f"decode.{step}.layers.0.attn.v_cache"][:, :held], ones)
        np.testing.assert_array_equal(patched[f"decode.{step}.layers.0.attn.k_cache"][:, -1:],
                                      patched[f"decode.{step}.layers.0.attn.k_rope"])
    # with every cached value 1 and nothing else new at step 1, each head's context at that step is all ones
    np.testing.assert_allclose(patched["decode.1.layers.0.attn.context"], 1.0, rtol=1e-6)
    np.testing.assert_array_equal(patched["layers.0.attn.k_rope"], clean["layers.0.attn.k_rope"])


def test_zero_head_equals_a_checkpoint_with_zeroed_o_proj_columns(tmp_path):
    from safetensors.numpy import load_file, save_file

    directory = tmp_path / "ckpt"
    assert main(["export", "qwen3-0.6b", *sum((["--set", o] for o in TINY), []), "--seed", "3",
                 "--out", str(directory)]) == 0
    layer, head, dh = 1, 2, 16
    for file in directory.glob("*.safetensors"):
        tensors = load_file(file)
        name = f"model.layers.{layer}.self_attn.o_proj.weight"
        if name in tensors:
            tensors[name][:, head * dh:(head + 1) * dh] = 0
            save_file(tensors, file, metadata={"format": "pt"})
    zeroed = run_trace(load_model(str(directory)), TOKENS, max_new_tokens=2)
    intervened = run_trace(load_model(str(directory)), TOKENS, max_new_tokens=2,
                           interventions=Interventions(zero_heads=((layer, head),)))
    rows = compare_traces(zeroed, intervened)
    differ = [r.name for r in rows if r.verdict != "OK"]
    assert differ == [f"layers.{layer}.attn.context", f"decode.1.layers.{layer}.attn.context"]
    assert np.abs(zeroed[f"layers.{layer}.attn.context"][head]).max() > 0


def test_patching_a_record_with_itself_changes_nothing(tmp_path, capsys):
    args = ["trace", "qwen3-0.6b", "--tokens", "5,17,3,99", "--seed", "2", "--max-new-tokens", "2",
            *sum((["--set", o] for o in TINY_MOE), [])]
    assert main(args + ["--out", str(tmp_path / "a.npz")]) == 0
    assert main(["show", str(tmp_path / "a.npz"), "layers.1.mlp.act", "--npy", str(tmp_path / "act.npy")]) == 0
    assert "wrote layers.1.mlp.act" in capsys.readouterr().out
    assert main(args + ["--out", str(tmp_path / "b.npz"), "--patch", f"layers.1.mlp.act={tmp_path / 'act.npy'}"]) == 0
    a, b = load_trace(tmp_path / "a.npz"), load_trace(tmp_path / "b.npz")
    assert a.names == b.names
    for name in a.names:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert b.meta["interventions"]["patches"][0]["name"] == "layers.1.mlp.act"
    assert a.meta["interventions"] is None
    assert main(["compare", str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]) == 0


def _bad(capsys, args):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tracer: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_interventions_are_one_line_errors(tmp_path, capsys):
    base = ["trace", "qwen3-0.6b", "--tokens", "5,17,3", "--seed", "2", *sum((["--set", o] for o in TINY_MOE), []),
            "--out", str(tmp_path / "x.npz")]
    assert "layer 3 is out of range" in _bad(capsys, base + ["--zero-head", "3.0"])
    assert "head 4 is out of range" in _bad(capsys, base + ["--zero-head", "0.4"])
    assert "expert 8 is out of range" in _bad(capsys, base + ["--drop-expert", "0.8"])
    assert "dense MLP layer" in _bad(capsys, base + ["--drop-expert", "1.0"])
    assert "LAYER.INDEX" in _bad(capsys, base + ["--zero-head", "1"])
    assert "fewer than the 2" in _bad(capsys, base + sum((["--drop-expert", f"0.{e}"] for e in range(7)), []))
    np.save(tmp_path / "wrong_shape.npy", np.zeros((2, 64), np.float32))
    np.save(tmp_path / "wrong_dtype.npy", np.zeros((3, 64), np.float64))
    np.save(tmp_path / "nan.npy", np.full((3, 64), np.nan, np.float32))
    np.save(tmp_path / "ok.npy", np.zeros((3, 64), np.float32))
    assert "[2, 64] float32" in _bad(capsys, base + ["--patch", f"layers.0.resid_post={tmp_path / 'wrong_shape.npy'}"])
    assert "float64" in _bad(capsys, base + ["--patch", f"layers.0.resid_post={tmp_path / 'wrong_dtype.npy'}"])
    assert "NaN" in _bad(capsys, base + ["--patch", f"layers.0.resid_post={tmp_path / 'nan.npy'}"])
    assert "no record of that name" in _bad(capsys, base + ["--patch", f"layers.9.resid_post={tmp_path / 'ok.npy'}"])
    assert "NAME=FILE.npy" in _bad(capsys, base + ["--patch", "layers.0.resid_post"])
    assert "does not exist" in _bad(capsys, base + ["--patch", f"embed.out={tmp_path / 'none.npy'}"])
    assert main(base) == 0
    assert "no record 'nope'" in _bad(capsys, ["show", str(tmp_path / "x.npz"), "nope", "--npy", str(tmp_path / "o.npy")])
    assert "end in .npy" in _bad(capsys, ["show", str(tmp_path / "x.npz"), "embed.out", "--npy", str(tmp_path / "o.txt")])


def test_torch_backend_refuses_a_patch_it_cannot_follow(tmp_path):
    pytest.importorskip("torch")
    iv = Interventions(patches=(("layers.0.attn.scores", np.zeros((4, 6, 6), np.float32)),), patch_files=("s.npy",))
    with pytest.raises(TracerError, match="the torch backend can patch only"):
        _trace(backend="torch", interventions=iv)


def test_meta_lists_interventions():
    trace = _trace(interventions=Interventions(zero_heads=((0, 1),), drop_experts=((2, 5),)))
    meta = json.loads(json.dumps(trace.meta))["interventions"]
    assert meta == {"zero_heads": ["0.1"], "drop_experts": ["2.5"], "patches": []}
