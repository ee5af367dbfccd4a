"""Parity: the real transformers Qwen3 / Qwen3-MoE, traced through the same schema, against the NumPy engine.

Skipped only when torch is not installed; CI installs it (``pip install -e '.[all]'``).
"""

import sys

import numpy as np
import pytest

from tracer import TracerError
from tracer.cli import main
from tracer.commands.run import load_model, run_trace
from tracer.sources import seed004
from tracer.traces.compare import compare_traces, first_divergence
from tracer.traces.tracefile import load_trace, save_trace

torch = pytest.importorskip("torch")

TINY = ["num_hidden_layers=3", "hidden_size=64", "head_dim=16", "intermediate_size=96", "vocab_size=300",
        "num_attention_heads=4", "num_key_value_heads=2"]
TINY_MOE = TINY + ["num_experts=8", "num_experts_per_tok=2", "moe_intermediate_size=32", "mlp_only_layers=[1]"]


def both(tmp_path, name, overrides, tokens, steps=3, torch_dtype="float32", directory=None):
    traces = []
    for backend in ("numpy", "torch"):
        model = load_model(directory or name, overrides if directory is None else [], seed=2)
        trace = run_trace(model, tokens, max_new_tokens=steps, backend=backend,
                          torch_dtype=torch_dtype if backend == "torch" else "float32")
        traces.append(load_trace(save_trace(tmp_path / f"{backend}.npz", trace)))
    return traces[0], traces[1]


def assert_parity(a, b):
    rows = compare_traces(a, b)
    assert [r for r in rows if r.verdict == "MISSING"] == []
    bad = [r for r in rows if r.verdict != "OK"]
    assert not bad, f"first divergence {first_divergence(rows)}; {len(bad)} records differ"
    return rows


@pytest.mark.parametrize("case, overrides", [("tiny", TINY), ("tiny-moe", TINY_MOE)])
def test_tiny_random_models_agree_record_by_record(tmp_path, case, overrides):
    a, b = both(tmp_path, "qwen3-0.6b", overrides, [5, 17, 3, 99, 42, 7])
    rows = assert_parity(a, b)
    assert len(rows) > 200 and b.meta["backend"] == "torch"
    assert "decode.2.layers.2.attn.k_cache" in b
    if case == "tiny-moe":
        assert any(n.startswith("layers.0.moe.experts.") and n.endswith(".act") for n in b.names)
        assert b.info["layers.0.moe.router_probs"]["derived"] and not b.info["layers.0.moe.router_logits"]["derived"]
        assert not b.info["layers.0.attn.probs"]["derived"]


def test_checkpoint_directory_through_from_pretrained(tmp_path, capsys):
    directory = tmp_path / "ckpt"
    assert main(["export", "qwen3-0.6b", *sum((["--set", o] for o in TINY_MOE), []), "--seed", "2",
                 "--out", str(directory)]) == 0
    a, b = both(tmp_path, None, [], [1, 2, 3, 4], directory=str(directory))
    assert_parity(a, b)


def test_qwen3_0_6b_full_width_two_layers(tmp_path):
    a, b = both(tmp_path, "qwen3-0.6b", ["num_hidden_layers=2"], [9707, 11, 1879, 0, 151645, 198], steps=2)
    assert_parity(a, b)
    assert b["logits"].shape == (6, 151936)


def test_toy_dense_through_a_real_qwen3(tmp_path):
    """The closest real Qwen3ForCausalLM to seed §3: L2 QK-Norm as RMSNorm with weight 1/√2, the rotation as the
    rotary module's inv_freq = −π/2, and the two things the library cannot do switched off on both sides
    (final norm on, mask −∞ instead of −100). Every matrix of §3 up to X(1) is reproduced by transformers."""
    overrides = ["final_norm=true", "mask_value=null"]
    a, b = both(tmp_path, "toy-dense", overrides, [0, 1, 2, 3], steps=1)
    assert_parity(a, b)
    for name, expected in seed004.DENSE.items():
        if name in ("layers.0.attn.mask", "layers.0.attn.masked_scores") or name.startswith("sample."):
            continue  # −∞ instead of −100; logits pass through the final norm the seed does not have
        got = b[name][0] if b[name].ndim == expected.ndim + 1 else b[name]
        np.testing.assert_allclose(got, expected, atol=1e-3, err_msg=name)


@pytest.mark.parametrize("preset, reason", [
    ("toy-dense", "final_norm=false"),
    ("toy-moe", "ReLU experts"),
])
def test_teaching_variants_the_library_cannot_express_are_refused(preset, reason, tmp_path, capsys):
    code = main(["trace", preset, "--tokens", "0,1,2,3", "--backend", "torch", "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert code == 2 and reason in err and err.count("\n") == 1
    assert not (tmp_path / "x.npz").exists()


def test_bfloat16_drift_is_bfloat16_sized(tmp_path, capsys):
    """bfloat16 keeps 8 significant bits: rounding alone moves a value by up to 2⁻⁹ of itself, so the worst
    element of every float record drifts from float32 by more than 2⁻¹⁰ (proof that it ran in bfloat16) and,
    through a few layers of accumulation, by less than 2⁻⁵ (of the record's largest value)."""
    a, b = both(tmp_path, "qwen3-0.6b", TINY, [5, 17, 3, 99], steps=2, torch_dtype="bfloat16")
    rows = compare_traces(a, b)
    assert {r.name for r in rows} == set(a.names) and all(r.verdict != "SHAPE" for r in rows)
    with capsys.disabled():
        print("\nbfloat16 vs float32 drift (max_rel), by op:")
        for op in ("attn_norm", "attn.q_rope", "attn.probs", "attn.context", "resid_post", "logits"):
            worst = max((r.max_rel or 0) for r in rows if r.name.endswith(op))
            print(f"  {op:14} {worst:.2e}")
            assert 2 ** -10 < worst < 2 ** -5, (op, worst)


def test_concurrent_runs_keep_their_own_records():
    """Two traces at once (as two explorer sessions would run them) record only their own model's tensors."""
    import threading

    models = {seed: load_model("qwen3-0.6b", TINY, seed=seed) for seed in (3, 4)}
    alone = {seed: run_trace(m, [1, 2, 3, 4], max_new_tokens=2, backend="torch") for seed, m in models.items()}
    together: dict[int, object] = {}

    def work(seed: int) -> None:
        together[seed] = run_trace(models[seed], [1, 2, 3, 4], max_new_tokens=2, backend="torch")

    threads = [threading.Thread(target=work, args=(seed,)) for seed in (3, 4, 3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed in (3, 4):
        assert together[seed].names == alone[seed].names
        for name in alone[seed].names:
            np.testing.assert_array_equal(together[seed][name], alone[seed][name], err_msg=f"seed {seed} {name}")
    assert not np.array_equal(alone[3]["logits"], alone[4]["logits"])


def test_logging_settings_are_restored():
    import transformers

    log = transformers.utils.logging
    log.set_verbosity_info()
    log.enable_progress_bar()
    try:
        run_trace(load_model("qwen3-0.6b", TINY), [1, 2], backend="torch")
        assert log.get_verbosity() == log.INFO and log.is_progress_bar_enabled()
    finally:
        log.set_verbosity_warning()


def test_cli_compare_json_and_exit_codes(tmp_path, capsys):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    for path, backend in ((a, "numpy"), (b, "torch")):
        assert main(["trace", "qwen3-0.6b", *sum((["--set", o] for o in TINY), []), "--tokens", "1,2,3",
                     "--backend", backend, "--out", str(path)]) == 0
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    import json

    first = json.loads(lines[0])
    assert set(first) >= {"name", "verdict", "max_abs", "max_rel"} and first["verdict"] == "OK"
    c = tmp_path / "c.npz"
    assert main(["trace", "qwen3-0.6b", *sum((["--set", o] for o in TINY), []), "--tokens", "1,2,3",
                 "--seed", "5", "--out", str(c)]) == 0
    capsys.readouterr()
    assert main(["compare", str(a), str(c)]) == 1
    out = capsys.readouterr().out
    assert "first divergence: embed.out" in out


def test_missing_torch_gives_an_install_hint(monkeypatch):
    from tracer.backends import torch_backend

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(TracerError, match=r"pip install 'qwen3-tracer\[torch\]'"):
        torch_backend.require_torch()


@pytest.mark.parametrize("source", ["preset", "checkpoint"])
def test_device_auto_offloads_layers_to_disk_and_records_the_same_names(tmp_path, source):
    """--device auto on a CPU-only machine, with CPU memory capped so that two of the three layers (one of them
    MoE) are offloaded to disk: the records still equal the NumPy engine's, and the meta says where each ran."""
    pytest.importorskip("accelerate")
    directory = None
    if source == "checkpoint":
        directory = tmp_path / "ckpt"
        assert main(["export", "qwen3-0.6b", *sum((["--set", o] for o in TINY_MOE), []), "--seed", "2",
                     "--out", str(directory)]) == 0
    model = load_model(str(directory) if directory else "qwen3-0.6b", [] if directory else TINY_MOE, seed=2)
    a = run_trace(model, [5, 17, 3, 99], max_new_tokens=3)
    b = run_trace(model, [5, 17, 3, 99], max_new_tokens=3, backend="torch", device="auto",
                  max_memory={"cpu": 600_000})
    assert_parity(a, b)
    placed = b.meta["placement"]
    assert placed["model.embed_tokens"] == "cpu" and "disk" in placed.values(), placed
    assert not list(tmp_path.glob("qwen3-tracer-offload-*"))


def test_device_auto_on_the_command_line_and_cuda_without_a_gpu(tmp_path, capsys):
    args = ["trace", "qwen3-0.6b", *sum((["--set", o] for o in TINY), []), "--tokens", "1,2,3", "--backend", "torch"]
    assert main([*args, "--device", "auto", "--out", str(tmp_path / "a.npz")]) == 0
    assert load_trace(tmp_path / "a.npz").meta["placement"] is not None
    if not torch.cuda.is_available():
        capsys.readouterr()
        assert main([*args, "--device", "cuda", "--out", str(tmp_path / "c.npz")]) == 2
        err = capsys.readouterr().err
        assert "no CUDA GPU" in err and err.count("\n") == 1
