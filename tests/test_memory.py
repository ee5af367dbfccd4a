"""Memory arithmetic of ``tracer info --context``: every preset of the real family against the formulas computed
here from the config fields, and the KV-cache table of the long-context notes (§7)."""

import json

import pytest

from tracer.cli import main
from tracer.engine.memory import memory
from tracer.sources.presets import PRESETS

FAMILY = ["qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "qwen3-14b", "qwen3-32b", "qwen3-30b-a3b",
          "qwen3-235b-a22b"]
BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "float64": 8}


def parameters(c) -> int:
    """Every checkpoint tensor of a Qwen3 / Qwen3-MoE, counted from the config (no tracer code)."""
    d, dh = c.hidden_size, c.head_dim
    attention = d * c.num_attention_heads * dh * 2 + d * c.num_key_value_heads * dh * 2 + 2 * dh
    if c.num_experts:
        mlp = d * c.num_experts + c.num_experts * 3 * d * c.moe_intermediate_size
    else:
        mlp = 3 * d * c.intermediate_size
    per_layer = attention + mlp + 2 * d
    head = 0 if c.tie_word_embeddings else c.vocab_size * d
    return c.vocab_size * d + c.num_hidden_layers * per_layer + d + head


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("context, dtype, batch", [(32768, "bfloat16", 1), (131072, "float32", 3)])
def test_every_preset_against_the_formulas(name, context, dtype, batch):
    c = PRESETS[name].config
    size = BYTES[dtype]
    m = memory(c, context, dtype, batch)
    assert m.parameters == parameters(c) and m.weights == parameters(c) * size
    per_layer = 2 * batch * c.num_key_value_heads * c.head_dim * context * size
    assert m.kv_per_layer == [per_layer] * c.num_hidden_layers and m.kv_total == per_layer * c.num_hidden_layers
    assert m.scores_materialised == batch * c.num_attention_heads * context ** 2 * size
    assert m.scores_flash == batch * c.num_attention_heads * context * 4
    assert m.largest_activation == "logits"  # V = 151936 is wider than any hidden or MLP width of the family
    assert m.largest_activation_bytes == batch * context * c.vocab_size * size


def test_the_notes_kv_table_and_published_sizes():
    gib = {name: memory(PRESETS[name].config, 32768).kv_total / 2 ** 30 for name in FAMILY}
    assert gib["qwen3-0.6b"] == 3.5 and gib["qwen3-4b"] == gib["qwen3-8b"] == 4.5
    assert gib["qwen3-32b"] == 8.0 and gib["qwen3-30b-a3b"] == 3.0
    assert memory(PRESETS["qwen3-8b"].config, 1).kv_per_token == 144 * 1024
    billions = {name: round(memory(PRESETS[name].config, 1).parameters / 1e9, 1) for name in FAMILY}
    assert billions == {"qwen3-0.6b": 0.6, "qwen3-1.7b": 1.7, "qwen3-4b": 4.0, "qwen3-8b": 8.2, "qwen3-14b": 14.8,
                        "qwen3-32b": 32.8, "qwen3-30b-a3b": 30.5, "qwen3-235b-a22b": 235.1}


def test_sliding_layers_hold_window_minus_one():
    c = PRESETS["qwen3-0.6b"].config.replace(use_sliding_window=True, sliding_window=4096, max_window_layers=20)
    m = memory(c, 131072)
    assert m.kv_tokens_per_layer == [131072] * 20 + [4095] * 8
    assert m.kv_total == 2 * 8 * 128 * 2 * (20 * 131072 + 8 * 4095)


def test_cli_text_and_json(capsys):
    assert main(["info", "qwen3-4b", "--context", "40960", "--batch", "2", "--dtype", "float16", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "qwen3-4b" and data["kv_total"] == 2 * 36 * 8 * 128 * 40960 * 2 * 2
    assert main(["info", "qwen3-0.6b", "--context", "32768"]) == 0
    out = capsys.readouterr().out
    assert "3,758,096,384 B" in out and "3.50 GiB" in out


@pytest.mark.parametrize("argv, field", [
    (["--json"], "--json"), (["--batch", "2"], "--batch"), (["--context", "0"], "--context"),
    (["--context", "8", "--dtype", "int8"], "--dtype"), (["--context", "8", "--batch", "0"], "--batch"),
])
def test_cli_errors(capsys, argv, field):
    assert main(["info", "qwen3-0.6b", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and field in err
