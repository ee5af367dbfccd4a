"""Generation with the KV cache: decode steps equal recomputation, cache growth, sampling, stopping."""


import numpy as np
import pytest

from tracer.cli import main
from tracer.commands.run import load_model, run_trace
from tracer.engine.model import Sampling, forward, generate
from tracer.engine.recorder import Recorder
from tracer.sources.config import Qwen3Config
from tracer.sources.presets import QWEN3_0_6B
from tracer.sources.weights import RandomWeights
from tracer.traces.tracefile import load_trace

SMALL = QWEN3_0_6B.replace(num_hidden_layers=3, hidden_size=48, head_dim=16, intermediate_size=64, vocab_size=211,
                           initializer_range=0.2)
SMALL_MOE = SMALL.replace(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=24, mlp_only_layers=(1,))
SLIDING = SMALL.replace(use_sliding_window=True, sliding_window=4, max_window_layers=1)


@pytest.mark.parametrize("cfg", [SMALL, SMALL_MOE, SLIDING], ids=["dense", "moe", "sliding"])
def test_decoding_with_the_cache_equals_recomputing_the_sequence(cfg: Qwen3Config):
    """20 decode steps: the cache's buffers fill and are replaced (a sliding layer drops what it no longer sees)."""
    weights = RandomWeights(cfg, seed=11)
    rec = Recorder()
    prompt = [5, 17, 3, 99, 42]
    gen = generate(cfg, weights, prompt, rec, Sampling(), max_new_tokens=21)
    full = forward(cfg, weights, np.array(prompt + gen.new_tokens[:-1]), Recorder(capture=[]))
    for step in range(1, 21):
        position = len(prompt) + step - 1
        np.testing.assert_allclose(rec.records[f"decode.{step}.logits"][0], full[position], rtol=0, atol=1e-5)
        np.testing.assert_allclose(rec.records[f"sample.{step}.logits"], full[position], rtol=0, atol=1e-5)
    np.testing.assert_allclose(rec.records["logits"], full[:len(prompt)], rtol=0, atol=1e-5)


def test_cache_grows_by_one_position_per_step_and_holds_post_rope_keys():
    weights = RandomWeights(SMALL, seed=3)
    rec = Recorder()
    generate(SMALL, weights, [1, 2, 3], rec, Sampling(), max_new_tokens=4)
    r = rec.records
    hkv, dh = SMALL.num_key_value_heads, SMALL.head_dim
    for step in (1, 2, 3):
        k_cache = r[f"decode.{step}.layers.2.attn.k_cache"]
        assert k_cache.shape == (hkv, 3 + step, dh)
        assert r[f"decode.{step}.layers.2.attn.scores"].shape == (SMALL.num_attention_heads, 1, 3 + step)
        np.testing.assert_array_equal(k_cache[:, -1:], r[f"decode.{step}.layers.2.attn.k_rope"])
        assert (r[f"decode.{step}.layers.2.attn.mask"] == 0).all()  # one new query sees every cached key
        assert r[f"decode.{step}.rope.cos"].shape == (1, dh)
    np.testing.assert_array_equal(r["decode.3.layers.0.attn.k_cache"][:, :3], r["layers.0.attn.k_rope"])
    assert rec.inputs["decode.1.layers.0.attn.v_cache"] == ["layers.0.attn.v_proj", "decode.1.layers.0.attn.v_proj"]
    assert rec.inputs["decode.3.layers.0.attn.k_cache"] == ["decode.2.layers.0.attn.k_cache",
                                                            "decode.3.layers.0.attn.k_rope"]
    assert r["decode.1.tokens"].tolist() == [int(r["sample.0.token_id"])]


def test_sampling_probabilities_respect_top_k_and_top_p():
    weights = RandomWeights(SMALL, seed=5)
    rec = Recorder()
    generate(SMALL, weights, [4, 8, 15], rec, Sampling(temperature=0.7, top_k=20, top_p=0.9, seed=1),
             max_new_tokens=3)
    for s in range(3):
        probs = rec.records[f"sample.{s}.probs"]
        assert abs(float(probs.sum()) - 1) < 1e-5
        assert 1 <= int((probs > 0).sum()) <= 20
        assert probs[int(rec.records[f"sample.{s}.token_id"])] > 0


def test_a_tiny_temperature_samples_the_largest_logit():
    rec = Recorder()
    generate(SMALL, RandomWeights(SMALL, seed=3), [1, 2, 3], rec, Sampling(temperature=1e-40), max_new_tokens=3)
    for step in range(3):
        probs, logits = rec.records[f"sample.{step}.probs"], rec.records[f"sample.{step}.masked_logits"]
        assert np.isfinite(probs).all() and probs.max() == 1.0
        assert int(rec.records[f"sample.{step}.token_id"]) == int(np.argmax(logits))


def test_sampling_is_seeded():
    weights = RandomWeights(SMALL, seed=5)
    runs = []
    for seed in (1, 1, 2):
        runs.append(generate(SMALL, weights, [4, 8], Recorder(capture=[]), Sampling(temperature=5.0, seed=seed),
                             max_new_tokens=8).new_tokens)
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_generation_stops_on_a_stop_token():
    model = load_model("toy-dense")
    # with every other token suppressed, greedy must choose <eos> (id 5), the toy's stop token
    meta = run_trace(model, [0, 1, 2, 3], sampling=Sampling(suppress=(0, 1, 2, 3, 4)), max_new_tokens=5).meta
    assert meta["generated_ids"] == [5] and meta["stop_reason"] == "stop_token"


def test_full_size_chat_generation_records_prefill_8_samples_and_7_decode_steps(tmp_path, capsys):
    out = tmp_path / "chat.npz"
    code = main(["trace", "qwen3-0.6b", "--seed", "0", "--prompt", "把「明天交報告」加上一個禮貌用語", "--chat",
                 "--max-new-tokens", "8", "--out", str(out)])
    assert code == 0
    npz = load_trace(out)
    meta = npz.meta
    assert meta["prompt"].startswith("<|im_start|>user\n把「明天交報告」") and meta["prompt"].endswith(
        "<|im_start|>assistant\n")
    assert npz["tokens"][0] == 151644 and len(meta["token_ids"]) == len(npz["tokens"])
    files = set(npz.names)
    assert {f"sample.{s}.token_id" for s in range(8)} <= files and "sample.8.token_id" not in files
    assert {f"decode.{s}.logits" for s in range(1, 8)} <= files and "decode.8.logits" not in files
    assert "decode.0.logits" not in files and "layers.27.resid_post" in files
    assert npz["decode.7.layers.27.attn.k_cache"].shape == (8, len(meta["token_ids"]) + 7, 128)
    assert "8 sampled, 7 decode steps" in capsys.readouterr().out


def test_shrunken_qwen3_30b_a3b_routes_top_8_of_128_experts(tmp_path, capsys):
    out = tmp_path / "moe.npz"
    assert main(["trace", "qwen3-30b-a3b", "--set", "num_hidden_layers=2", "--tokens", "9707,11,1879,0",
                 "--out", str(out)]) == 0
    npz = load_trace(out)
    for layer in (0, 1):
        ids = npz[f"layers.{layer}.moe.topk_ids"]
        assert ids.shape == (4, 8) and npz[f"layers.{layer}.moe.gates"].shape == (4, 128)
        assert npz[f"layers.{layer}.moe.router_logits"].shape == (4, 128)
        used = np.unique(ids)
        experts = {int(n.split(".")[4]) for n in npz.names if n.startswith(f"layers.{layer}.moe.experts.")}
        assert experts == set(used.tolist())
        e = int(used[0])
        rows = npz[f"layers.{layer}.moe.experts.{e}.token_ids"]
        assert npz[f"layers.{layer}.moe.experts.{e}.gate_proj"].shape == (len(rows), 768)
        assert npz[f"layers.{layer}.moe.experts.{e}.down_proj"].shape == (len(rows), 2048)
        np.testing.assert_allclose(npz[f"layers.{layer}.moe.gates"].sum(axis=1), 1, rtol=1e-5)
