"""The command line: traces, the seed-style printout, and one-line errors with exit code 2."""

import subprocess
import sys

import numpy as np
import pytest

from tracer.cli import main
from tracer.traces.tracefile import load_trace


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_trace_toy_dense_prompt_tokenizes_to_seed_ids(tmp_path, capsys):
    out = tmp_path / "d.npz"
    code, stdout, _ = run_cli(capsys, "trace", "toy-dense", "--prompt", "明天交報告", "--out", str(out))
    assert code == 0
    assert 'next 4 "請"' in stdout
    npz = np.load(out, allow_pickle=False)
    assert npz["tokens"].tolist() == [0, 1, 2, 3]
    meta = load_trace(out).meta
    trace = load_trace(out)
    assert meta["schema_version"] == 2 and meta["backend"] == "numpy" and meta["model"] == "toy-dense"
    assert meta["config"]["hidden_size"] == 4 and meta["token_labels"] == ["<bos>", "明天", "交", "報告"]
    assert meta["versions"]["numpy"] == np.__version__
    names = [r["name"] for r in meta["records"]]
    stored = {r["name"] for r in meta["records"] if r.get("storage", {}).get("kind") != "rebuilt"}
    assert stored | {"__meta__"} == set(npz.files) and trace.names == names
    assert {"layers.0.attn.masked_scores", "layers.0.resid_post"} <= set(names) - stored  # rebuilt on read
    probs = next(r for r in meta["records"] if r["name"] == "layers.0.attn.probs")
    assert probs["shape"] == [1, 4, 4] and probs["dtype"] == "float32"
    assert probs["inputs"] == ["layers.0.attn.masked_scores"]
    assert "softmax" in probs["en"] and probs["zh"] and "frac" in probs["formula"]
    q_norm = next(r for r in meta["records"] if r["name"] == "layers.0.attn.q_norm")
    assert q_norm["op"] == "l2_norm"
    assert q_norm["inputs"] == ["layers.0.attn.q_proj", "model.layers.0.self_attn.q_norm.weight"]


def test_tokens_option_and_float64(tmp_path, capsys):
    out = tmp_path / "d.npz"
    assert run_cli(capsys, "trace", "toy-moe", "--tokens", "0,1,2,3", "--dtype", "float64", "--out", str(out))[0] == 0
    trace = load_trace(out)
    assert trace["layers.0.moe.gates"].dtype == np.float64
    assert int(trace["sample.0.token_id"]) == 4


def test_set_overrides_change_the_config(tmp_path, capsys):
    out = tmp_path / "q.npz"
    code, _, err = run_cli(capsys, "trace", "qwen3-0.6b", "--tokens", "1,2,3", "--set", "num_hidden_layers=2",
                           "--set", "hidden_size=64", "--set", "intermediate_size=32", "--set", "vocab_size=300",
                           "--set", "head_dim=16", "--out", str(out))
    assert code == 0, err
    trace = load_trace(out)
    assert trace.meta["config"]["num_hidden_layers"] == 2 and trace.meta["config"]["hidden_size"] == 64
    assert "layers.1.resid_post" in trace and "layers.2.attn_norm" not in trace


def test_set_json_list_makes_a_dense_layer_in_a_moe_model(tmp_path, capsys):
    out = tmp_path / "m.npz"
    code, _, err = run_cli(capsys, "trace", "qwen3-0.6b", "--tokens", "5,6,7", "--set", "num_hidden_layers=2",
                           "--set", "vocab_size=100", "--set", "hidden_size=32", "--set", "head_dim=8",
                           "--set", "num_experts=4", "--set", "num_experts_per_tok=2",
                           "--set", "moe_intermediate_size=8", "--set", "mlp_only_layers=[1]", "--out", str(out))
    assert code == 0, err
    files = load_trace(out).names
    assert "layers.0.moe.gates" in files and "layers.1.mlp.act" in files and "layers.1.moe.gates" not in files


def test_capture_keeps_only_matching_records(tmp_path, capsys):
    out = tmp_path / "c.npz"
    code, _, _ = run_cli(capsys, "trace", "toy-dense", "--tokens", "0,1,2,3", "--capture", "layers.0.attn.*",
                         "--capture", "logits", "--out", str(out))
    assert code == 0
    files = set(load_trace(out).names)
    assert "layers.0.attn.probs" in files and "logits" in files and "embed.out" not in files
    assert all(f.startswith("layers.0.attn.") or f == "logits" for f in files)


def test_seeded_random_weights_are_deterministic(tmp_path, capsys):
    args = ["--tokens", "1,2", "--set", "num_hidden_layers=1", "--set", "vocab_size=50", "--set", "hidden_size=16",
            "--set", "head_dim=8", "--set", "intermediate_size=8"]
    paths = []
    for seed, name in ((3, "a"), (3, "b"), (4, "c")):
        paths.append(tmp_path / f"{name}.npz")
        assert run_cli(capsys, "trace", "qwen3-0.6b", *args, "--seed", str(seed), "--out", str(paths[-1]))[0] == 0
    a, b, c = (np.load(p)["logits"] for p in paths)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_show_prints_seed_style(tmp_path, capsys):
    out = tmp_path / "d.npz"
    run_cli(capsys, "trace", "toy-dense", "--prompt", "明天交報告", "--out", str(out))
    code, stdout, _ = run_cli(capsys, "show", str(out), "layers.0.attn.probs")
    assert code == 0
    assert "layers.0.attn.probs  (shape=1×4×4, float32)" in stdout
    assert "0.230 0.770 0.000 0.000" in stdout and "0.454 0.136 0.136 0.275" in stdout
    assert "exp(" in stdout and "Attention weights" in stdout
    code, stdout, _ = run_cli(capsys, "show", str(out), "layers.0.attn.probs", "--lang", "zh-Hant")
    assert "注意力權重" in stdout and "形狀=1×4×4" in stdout
    code, stdout, _ = run_cli(capsys, "show", str(out), "layers.0.attn.probs", "--lang", "zh")  # zh = zh-Hans
    assert "注意力权重:对遮罩后分数逐行做 softmax,每行和为 1。" in stdout


def test_demo_prints_both_worked_examples(tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, "demo", "--out-dir", str(tmp_path))
    assert code == 0
    assert 'toy-dense: 4 tokens [<bos> 明天 交 報告] -> next 4 "請"' in stdout
    assert 'toy-moe: 4 tokens [<bos> 明天 交 報告] -> next 4 "請"' in stdout
    assert "12.383" in stdout and "17.844" in stdout  # seed §3-5-8 X(1) and §3-6-3 logit of 請
    assert (tmp_path / "toy-dense.npz").exists() and (tmp_path / "toy-moe.npz").exists()


@pytest.mark.parametrize("argv, needle", [
    (["trace", "gpt-2", "--tokens", "0", "--out", "{tmp}/x.npz"], "unknown model 'gpt-2'"),
    (["trace", "toy-dense", "--tokens", "0", "--set", "hiden_size=8", "--out", "{tmp}/x.npz"], "did you mean hidden_size"),
    (["trace", "qwen3-0.6b", "--tokens", "0", "--set", "num_hidden_layers=two", "--out", "{tmp}/x.npz"],
     "num_hidden_layers must be a whole number"),
    (["trace", "toy-dense", "--tokens", "0", "--set", "qk_norm=layer", "--out", "{tmp}/x.npz"], "qk_norm must be one of"),
    (["trace", "toy-dense", "--tokens", "0", "--set", "nothing", "--out", "{tmp}/x.npz"], "KEY=VALUE"),
    (["trace", "qwen3-0.6b", "--tokens", "0", "--set", "num_attention_heads=12", "--out", "{tmp}/x.npz"],
     "must be a multiple of num_key_value_heads"),
    (["trace", "toy-dense", "--tokens", "0,6", "--out", "{tmp}/x.npz"], "token id 6 is outside the vocabulary"),
    (["trace", "toy-dense", "--tokens", "0,-1", "--out", "{tmp}/x.npz"], "outside the vocabulary"),
    (["trace", "toy-dense", "--tokens", "a,b", "--out", "{tmp}/x.npz"], "comma-separated whole numbers"),
    (["trace", "toy-dense", "--prompt", "", "--out", "{tmp}/x.npz"], "the prompt is empty"),
    (["trace", "toy-dense", "--prompt", "明天交作業", "--out", "{tmp}/x.npz"], "'作' (position 3) is not in the toy"),
    (["trace", "toy-dense", "--tokens", ",".join(["1"] * 17), "--out", "{tmp}/x.npz"], "exceed max_position_embeddings"),
    (["trace", "toy-dense", "--tokens", "0", "--out", "{tmp}/no/such/dir/x.npz"], "does not exist"),
    (["trace", "toy-dense", "--tokens", "0", "--capture", "zzz*", "--out", "{tmp}/x.npz"], "kept no record"),
    (["trace", "toy-dense", "--tokens", "0", "--out", "{tmp}/x.npz", "--max-new-tokens", "abc"],
     "invalid int value: 'abc'"),
    (["trace", "toy-dense", "--prompt", "明天", "--chat", "--out", "{tmp}/x.npz"], "--chat needs Qwen3's tokenizer"),
    (["trace", "toy-dense", "--tokens", "0", "--out", "{tmp}"], "is a directory"),
    (["trace", "toy-dense", "--tokens", "0", "--set", "num_hidden_layers=2", "--out", "{tmp}/x.npz"],
     "fixed weights of seed 004"),
    (["trace", "toy-dense", "--tokens", "0", "--round", "-1", "--out", "{tmp}/x.npz"], "--round takes 0 to 12"),
    (["trace", "toy-dense", "--tokens", "0", "--seed", "-5", "--out", "{tmp}/x.npz"], "--seed must be"),
    (["trace", "toy-dense", "--tokens", "0", "--top-p", "1.5", "--temperature", "1", "--out", "{tmp}/x.npz"],
     "top_p must be in (0, 1]"),
    (["trace", "toy-dense", "--tokens", "0", "--temperature", "nan", "--out", "{tmp}/x.npz"], "temperature must be"),
    (["trace", "toy-dense", "--tokens", "0", "--top-k", "0", "--out", "{tmp}/x.npz"], "top_k must be at least 1"),
    (["trace", "toy-dense", "--out", "{tmp}/x.npz"], "give the input with --prompt"),
    (["trace", "toy-dense", "--tokens", "0"], "--out"),
    (["show", "{tmp}/missing.npz"], "does not exist"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_on_stderr_with_exit_2(tmp_path, capsys, argv, needle):
    code, out, err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("tracer: error:"), err
    assert needle in err
    assert not (tmp_path / "x.npz").exists()


def test_console_script_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tracer.cli", "trace", "toy-moe", "--tokens", "9", "--out",
                           str(tmp_path / "x.npz")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
