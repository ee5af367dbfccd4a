"""tracer train-step: loss, gradients, optimizer, SFT mask, DPO and GRPO against independent computations
(transformers' own loss, torch autograd, torch.optim, finite differences, the formulas written in torch here)."""

import json
import math

import numpy as np
import pytest

from tracer import TracerError
from tracer.cli import main
from tracer.commands.run import load_model
from tracer.commands.train_run import dpo_step, grpo_step, sft_segments, sft_tokens, train_step, train_step_torch
from tracer.engine.train import Optimizer
from tracer.traces.tracefile import load_trace

torch = pytest.importorskip("torch")

TINY = ["num_hidden_layers=2", "hidden_size=32", "head_dim=8", "intermediate_size=48", "vocab_size=120",
        "num_attention_heads=4", "num_key_value_heads=2"]
TINY_MOE = TINY + ["num_experts=6", "num_experts_per_tok=2", "moe_intermediate_size=16", "mlp_only_layers=[1]",
                   "norm_topk_prob=false"]
IDS = [5, 17, 3, 99, 42, 7, 17, 3]


def assert_grads_match(a, b, rtol=1e-4):
    """Every gradient record of trace a equals the same record of b, relative to the record's largest value."""
    names = [n for n in a.names if n.startswith("grad.")]
    assert names and sorted(names) == sorted(n for n in b.names if n.startswith("grad."))
    for n in names:
        want = b[n]
        scale = max(float(np.max(np.abs(want))), 1e-8)
        assert float(np.max(np.abs(a[n] - want))) <= rtol * scale, n
    return names


@pytest.mark.parametrize("preset, overrides", [
    ("qwen3-0.6b", TINY), ("qwen3-0.6b", TINY_MOE), ("qwen3-0.6b", TINY_MOE[:-1] + ["norm_topk_prob=true"]),
    ("toy-dense", ["final_norm=true", "mask_value=null"]),
    ("qwen3-0.6b", TINY + ['rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4}',
                           "use_sliding_window=true", "sliding_window=3", "max_window_layers=1"]),
])
def test_every_gradient_equals_torch_autograd_and_the_loss_transformers(preset, overrides):
    model = load_model(preset, overrides, seed=3)
    ids = IDS if preset != "toy-dense" else [0, 1, 2, 3, 4, 2]
    a = train_step(model, ids)
    b = train_step_torch(model, ids, device="cpu")
    names = assert_grads_match(a, b)
    assert "grad.layers.0.attn.probs" in names and "grad.param.model.layers.0.self_attn.q_proj.weight" in names
    assert abs(float(a["train.loss"]) - b.meta["transformers_loss"]) <= 1e-5 * b.meta["transformers_loss"]
    np.testing.assert_array_equal(a["train.labels"], b["train.labels"])
    np.testing.assert_allclose(a["train.token_loss"], b["train.token_loss"], rtol=1e-5)
    if model.cfg.is_moe:
        assert "grad.layers.0.moe.experts.0.act" in names or "grad.layers.0.moe.experts.1.act" in names
        assert abs(a.meta["aux_loss"] - b.meta["aux_loss_transformers"]) <= 1e-5 * a.meta["aux_loss"]
        assert a["train.aux_f"].sum() == pytest.approx(model.cfg.num_experts_per_tok)
        assert a["train.aux_p"].sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("preset", ["toy-moe", "toy-dense"])
def test_toys_gradients_equal_finite_differences(preset):
    """The toys as the seed defines them (ReLU experts, router bias, mask −100, no final norm: not expressible in
    transformers): central differences of the loss in float64 for every parameter entry."""
    model = load_model(preset, dtype="float64")
    ids = [0, 1, 2, 3, 4]
    a = train_step(model, ids)
    weights = {n: np.array(model.weights[n]) for n in model.weights}

    def loss(w):
        from tracer.engine.train import lm_loss, run_forward, Targets
        rec = run_forward(model.cfg, w, np.array(ids))
        return lm_loss(model.cfg, rec.records, Targets.next_token(np.array(ids), np.ones(len(ids), bool)), 0.001)[0].value

    h = 1e-6
    for name, w in weights.items():
        g = a[f"grad.param.{name}"]
        for idx in np.ndindex(w.shape):
            old = w[idx]
            w[idx] = old + h
            up = loss(weights)
            w[idx] = old - h
            down = loss(weights)
            w[idx] = old
            assert abs((up - down) / (2 * h) - g[idx]) <= 1e-6 * max(1.0, abs(g[idx])), (name, idx)


def test_forward_numbers_are_the_inference_numbers():
    from tracer.commands.run import run_trace

    model = load_model("qwen3-0.6b", TINY_MOE, seed=1)
    inference = run_trace(model, IDS)
    step = train_step(model, IDS)
    for name in inference.names:
        if not name.startswith(("sample.", "lens.", "attrib.")):  # lens and attribution: inference only
            np.testing.assert_array_equal(step[name], inference[name], err_msg=name)


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_one_optimizer_step_equals_torch_optim(kind):
    model = load_model("qwen3-0.6b", TINY, seed=4)
    opt = Optimizer(kind, 0.01, 0.01 if kind == "adamw" else 0.0)
    trace = train_step(model, IDS, optimizer=opt, update_params="model.layers.*")
    for name in [n for n in model.weights if n.startswith("model.layers.")]:
        p = torch.nn.Parameter(torch.tensor(np.array(model.weights[name])))
        p.grad = torch.tensor(trace[f"grad.param.{name}"])
        (torch.optim.AdamW([p], lr=0.01) if kind == "adamw" else torch.optim.SGD([p], lr=0.01)).step()
        want = p.detach().numpy() - model.weights[name]
        np.testing.assert_allclose(trace[f"update.param.{name}"], want, rtol=1e-4, atol=1e-7, err_msg=name)
    assert float(trace["train.loss_after"]) < float(trace["train.loss"])


def test_adamw_steps_follow_torch_on_the_same_batch():
    """Three AdamW steps: the NumPy loss per step equals a torch loop (transformers model, torch.optim.AdamW)."""
    from tracer.backends import torch_backend as tb
    from tracer.backends.torch_train import hf_labels

    model = load_model("qwen3-0.6b", TINY, seed=5)
    trace = train_step(model, IDS, optimizer=Optimizer("adamw", 0.01, 0.01), steps=3)
    hf = tb.build_model(model.cfg, model.weights, None, "float32", "cpu", traced=False)
    opt = torch.optim.AdamW(hf.parameters(), lr=0.01, weight_decay=0.01)
    x = torch.tensor([IDS])
    labels = torch.tensor(hf_labels(trace["train.labels"])[None])
    losses = []
    for _ in range(3):
        opt.zero_grad()
        out = hf(input_ids=x, labels=labels)
        losses.append(out.loss.item())
        out.loss.backward()
        opt.step()
    with torch.no_grad():
        losses.append(hf(input_ids=x, labels=labels).loss.item())
    np.testing.assert_allclose(trace.meta["losses"], losses, rtol=2e-4)
    assert float(trace["train.loss_after"]) == pytest.approx(losses[-1], rel=2e-4)


def test_sft_trains_exactly_the_assistant_spans_of_trls_template():
    model = load_model("qwen3-0.6b", TINY[:-3] + ["num_attention_heads=4", "num_key_value_heads=2"], seed=0)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "1+1?"},
                {"role": "assistant", "content": "<think>\nadd\n</think>\n\n2"},
                {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    segments = sft_segments(messages)
    trained = [s.text for s in segments if s.trained]
    # the facts note's spans (TRL qwen3_training.jinja): think block, answer, <|im_end|> and the newline
    assert trained == ["<think>\nadd\n</think>\n\n2<|im_end|>\n", "<think>\n\n</think>\n\n4<|im_end|>\n"]
    assert all(s.text.endswith("<|im_start|>assistant\n") for s in segments if not s.trained and
               "assistant" in s.text)
    ids, counted = sft_tokens(model, segments)
    tok = model.tokenizer
    spans = "".join(tok.decode([i]) if c else "|" for i, c in zip(ids, counted))
    assert "<think>\nadd\n</think>\n\n2<|im_end|>\n" in spans and "<|im_start|>" not in spans
    trace = train_step(model, ids, counted, sft=True)
    on_torch = train_step_torch(model, ids, counted, sft=True, device="cpu")
    assert float(trace["train.loss"]) == pytest.approx(on_torch.meta["transformers_loss"], rel=1e-5)
    labels = trace["train.labels"]
    assert [t for t, c in zip(ids[1:], counted[1:]) if c] == [int(x) for x in labels if x != -100]
    assert trace.meta["label_reasons"].count("counted") == int(counted[1:].sum())


def test_grpo_advantages_and_loss_against_torch():
    """Advantages of rewards [1, 0, 0, 1] are ±0.865875 (TRL, facts note); loss and gradient of
    Σ −exp(logπ − logπ.detach())·A / N written in torch on the transformers model."""
    from tracer.backends import torch_backend as tb

    model = load_model("toy-dense", ["final_norm=true", "mask_value=null"])
    group = {"prompt": "明天", "completions": [{"text": "交報告", "reward": 1}, {"text": "請", "reward": 0},
                                              {"text": "交", "reward": 0}, {"text": "報告請", "reward": 1}]}
    trace = grpo_step(model, group)
    np.testing.assert_allclose(trace["grpo.advantages"], [0.865875, -0.865875, -0.865875, 0.865875], atol=1e-6)
    hf = tb.build_model(model.cfg, model.weights, None, "float32", "cpu", traced=False)
    tok = model.tokenizer
    p_len = len(tok.encode("明天"))
    adv = trace["grpo.advantages"]
    seqs = [tok.encode("明天" + c["text"]) for c in group["completions"]]
    total = sum(len(s) - p_len for s in seqs)
    loss = 0
    for s, a in zip(seqs, adv):
        logp = torch.log_softmax(hf(input_ids=torch.tensor([s])).logits[0, :-1], -1)
        lp = logp.gather(1, torch.tensor(s[1:])[:, None])[p_len - 1:, 0]
        loss = loss + torch.sum(-torch.exp(lp - lp.detach()) * float(a)) / total
    loss.backward()
    assert float(trace["train.loss"]) == pytest.approx(loss.item(), abs=1e-6)
    g = hf.model.layers[0].self_attn.o_proj.weight.grad.numpy()
    np.testing.assert_allclose(trace["grad.param.model.layers.0.self_attn.o_proj.weight"], g, rtol=1e-4, atol=1e-6)


def test_dpo_loss_rewards_and_gradients_against_torch():
    """The DPO formula in torch on the transformers model: loss, gradient at the start (reference = policy), and
    the loss after one SGD step."""
    from tracer.backends import torch_backend as tb

    model = load_model("qwen3-0.6b", TINY, seed=6)
    tok_ids = {"prompt": [5, 17, 3], "chosen": [99, 42], "rejected": [7, 8, 9]}

    class Tok:  # plain ids through the pair file: "5 17 3" -> [5, 17, 3]
        def encode(self, text):
            return [int(x) for x in text.split()]

        def token_strings(self, ids):
            return [str(i) for i in ids]

    model._tokenizer = Tok()
    pair = {k: " ".join(map(str, v)) + (" " if k == "prompt" else "") for k, v in tok_ids.items()}
    beta, lr = 0.1, 0.5
    trace = dpo_step(model, pair, beta=beta, optimizer=Optimizer("sgd", lr), steps=1, update_params="*")
    hf = tb.build_model(model.cfg, model.weights, None, "float32", "cpu", traced=False)

    kept = {}

    def logp(ans):
        s = tok_ids["prompt"] + tok_ids[ans]
        logits = hf(input_ids=torch.tensor([s])).logits
        if logits.requires_grad:
            logits.retain_grad()
            kept[ans] = logits
        lp = torch.log_softmax(logits[0, :-1], -1).gather(1, torch.tensor(s[1:])[:, None])
        return lp[len(tok_ids["prompt"]) - 1:, 0].sum()

    with torch.no_grad():
        ref = {a: logp(a).item() for a in ("chosen", "rejected")}
    pc, pr = logp("chosen"), logp("rejected")
    loss = -torch.nn.functional.logsigmoid(beta * ((pc - ref["chosen"]) - (pr - ref["rejected"])))
    loss.backward()
    assert float(trace["train.loss"]) == pytest.approx(loss.item(), abs=1e-6) == pytest.approx(math.log(2), abs=1e-6)
    assert float(trace["dpo.chosen.logp"]) == pytest.approx(pc.item(), rel=1e-5)
    assert float(trace["dpo.rejected.ref_logp"]) == pytest.approx(ref["rejected"], rel=1e-5)
    for name, p in hf.named_parameters():
        np.testing.assert_allclose(trace[f"grad.param.{name}"], p.grad.numpy(), rtol=1e-4, atol=1e-7, err_msg=name)
    # the trace keeps the chosen answer's forward: ∂L/∂logits of that pass
    np.testing.assert_allclose(trace["grad.logits"], kept["chosen"].grad[0].numpy(), rtol=1e-4, atol=1e-8)
    assert trace.meta["token_ids"] == tok_ids["prompt"] + tok_ids["chosen"]
    with torch.no_grad():
        for p in hf.parameters():
            p -= lr * p.grad
        rc, rr = beta * (logp("chosen").item() - ref["chosen"]), beta * (logp("rejected").item() - ref["rejected"])
    after = -math.log(1 / (1 + math.exp(-(rc - rr))))
    assert float(trace["train.loss_after"]) == pytest.approx(after, rel=1e-4)
    assert after < math.log(2)


@pytest.mark.parametrize("argv, message", [
    (["toy-dense", "--tokens", "3"], "every position is masked"),
    (["toy-dense", "--prompt", "明天", "--optimizer", "sgd", "--lr", "nan"], "--lr must be a positive finite"),
    (["toy-dense", "--prompt", "明天", "--optimizer", "adamw", "--lr", "-1"], "--lr must be a positive finite"),
    (["toy-dense", "--prompt", "明天", "--optimizer", "adamw", "--lr", "inf"], "--lr must be a positive finite"),
    (["toy-dense", "--prompt", "明天", "--optimizer", "adamw"], "needs --lr"),
    (["toy-dense", "--prompt", "明天", "--steps", "3"], "--steps repeats optimizer steps"),
    (["toy-dense", "--prompt", "明天", "--sft"], "--sft masks a conversation"),
    (["toy-moe", "--prompt", "明天交", "--aux-coef", "-1"], "--aux-coef must be a non-negative finite"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, message):
    assert main(["train-step", *argv, "--out", str(tmp_path / "t.npz")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("kind, data, message", [
    ("dpo", {"prompt": "明天", "chosen": "交"}, "non-empty text field 'rejected'"),
    ("dpo", {"prompt": "明天", "chosen": "交", "rejected": "  "}, "non-empty text field 'rejected'"),
    ("dpo", [1, 2], "non-empty text field 'prompt'"),
    ("grpo", {"prompt": "明天", "completions": [{"text": "交", "reward": 1}]}, "at least 2"),
    ("grpo", {"prompt": "明天", "completions": [{"text": "交", "reward": 1}, {"text": "", "reward": 0}]},
     "non-empty text field 'text'"),
    ("grpo", {"prompt": "明天", "completions": [{"text": "交", "reward": 1}, {"text": "請"}]}, "finite number"),
])
def test_bad_pair_and_group_files(tmp_path, capsys, kind, data, message):
    path = tmp_path / "f.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    assert main(["train-step", "toy-dense", f"--{kind}", str(path), "--out", str(tmp_path / "t.npz")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_dpo_beta_must_be_positive(tmp_path, capsys):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"prompt": "明天", "chosen": "交", "rejected": "請"}), encoding="utf-8")
    assert main(["train-step", "toy-dense", "--dpo", str(path), "--beta", "0", "--out", str(tmp_path / "t.npz")]) == 2
    assert "--beta must be a positive finite number, got 0.0" in capsys.readouterr().err


def test_sft_without_an_assistant_turn(tmp_path, capsys):
    path = tmp_path / "m.json"
    path.write_text(json.dumps([{"role": "user", "content": "hi"}]), encoding="utf-8")
    argv = ["train-step", "qwen3-0.6b", *sum((["--set", o] for o in TINY), []), "--messages", str(path), "--sft",
            "--out", str(tmp_path / "t.npz")]
    assert main(argv) == 2
    assert "no assistant turn" in capsys.readouterr().err
    with pytest.raises(TracerError, match="no assistant turn"):
        sft_segments([{"role": "system", "content": "x"}])


def test_cli_writes_a_loadable_trace(tmp_path, capsys):
    out = tmp_path / "t.npz"
    assert main(["train-step", "toy-moe", "--prompt", "明天交報告", "--optimizer", "adamw", "--lr", "0.05",
                 "--steps", "3", "--out", str(out)]) == 0
    trace = load_trace(out)
    assert len(trace.meta["losses"]) == 4 and trace.meta["losses"][-1] < trace.meta["losses"][0]
    assert "update.param.model.layers.0.self_attn.q_proj.weight" in trace
    assert "grad.layers.0.moe.router_probs" in trace and "train.aux_loss" in trace
    assert "loss per step" in capsys.readouterr().out
    assert main(["show", str(out), "grad.layers.0.attn.probs"]) == 0


def test_sft_from_the_command_line_shows_the_trained_spans(tmp_path, capsys):
    path = tmp_path / "m.json"
    path.write_text(json.dumps([{"role": "user", "content": "1+1?"},
                                {"role": "assistant", "content": "<think>\nadd\n</think>\n\n2"}]), encoding="utf-8")
    small = TINY[:-3] + ["num_attention_heads=4", "num_key_value_heads=2"]
    argv = ["train-step", "qwen3-0.6b", *sum((["--set", o] for o in small), []), "--messages", str(path), "--sft",
            "--out", str(tmp_path / "t.npz")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert 'trained tokens (--sft, TRL assistant_only_loss): "<think>\\nadd\\n</think>\\n\\n2<|im_end|>\\n"' in out
    trace = load_trace(tmp_path / "t.npz")
    assert trace.meta["objective"] == "sft" and trace.meta["label_reasons"][0] == "not_assistant"


def test_tracer_compare_numpy_and_torch_train_step_traces(tmp_path, capsys):
    common = ["train-step", "qwen3-0.6b", *sum((["--set", o] for o in TINY_MOE), []), "--tokens", "5,17,3,99,42,7"]
    assert main([*common, "--out", str(tmp_path / "n.npz")]) == 0
    assert main([*common, "--backend", "torch", "--device", "cpu", "--out", str(tmp_path / "t.npz")]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "n.npz"), str(tmp_path / "t.npz")]) == 0
    assert "0 DIFF, 0 SHAPE, 0 MISSING" in capsys.readouterr().out
