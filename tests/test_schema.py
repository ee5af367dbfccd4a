"""The schema table matches docs/trace-schema.md, and a full-size trace holds every name it defines."""

import re
from pathlib import Path

import numpy as np
import pytest

from tracer.cli import main
from tracer.traces.schema import OPS, SCHEMA, entry_for
from tracer.traces.tracefile import load_trace

DOC = Path(__file__).resolve().parents[1] / "docs" / "trace-schema.md"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "trace-schema.md"


def doc_names(path: Path = DOC) -> dict[str, str]:
    """Name pattern -> shape, read from the markdown tables (``a.b`` / ``c`` means a.b and a.c)."""
    names = {}
    for line in path.read_text(encoding="utf-8").split("\n## File")[0].splitlines():  # the name tables
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        parts = re.findall(r"`([^`]+)`", cells[0])
        first = parts[0]
        if first.startswith("decode.{s}.<"):
            continue
        names[first] = cells[1]
        stem = first.rsplit(".", 1)[0]
        for extra in parts[1:]:
            names[extra if "." in extra else f"{stem}.{extra}"] = cells[1]
    return names


def test_docs_keep_every_name_of_the_shared_spec():
    """docs/trace-schema.md is the project's own schema now and grows past the shared spec; it never drops a
    name the spec defines, nor changes its shape."""
    if not SHARED.exists():
        pytest.skip("../shared/trace-schema.md is not beside this checkout")
    ours, spec = doc_names(), doc_names(SHARED)
    assert len(spec) > 40
    for name, shape in spec.items():
        assert name in ours, f"{name} of the shared spec is missing from docs/trace-schema.md"
        assert ours[name] == shape, name


def test_schema_table_covers_exactly_the_documented_names():
    documented = doc_names()
    ours = {e.pattern.removeprefix("decode.{s}.") for e in SCHEMA}
    bare = {n.removeprefix("decode.{s}.") for n in documented}
    assert ours == bare
    for entry in SCHEMA:
        assert entry.op in OPS, entry.pattern
        assert entry.en and entry.zh


def test_entry_lookup():
    assert entry_for("layers.27.attn.q_rope").pattern == "layers.{i}.attn.q_rope"
    assert entry_for("decode.3.layers.0.attn.k_cache").pattern == "layers.{i}.attn.k_cache"
    assert entry_for("layers.2.moe.experts.17.weighted").pattern == "layers.{i}.moe.experts.{e}.weighted"
    for bad in ("layers.0.attn.k_cache", "layers.x.attn_norm", "decode.1.sample.0.logits", "logit"):
        with pytest.raises(KeyError):
            entry_for(bad)


def test_full_size_qwen3_0_6b_trace_holds_every_schema_name(tmp_path, capsys):
    ids = [(i * 4099) % 151936 for i in range(32)]
    out = tmp_path / "q.npz"
    assert main(["trace", "qwen3-0.6b", "--seed", "0", "--tokens", ",".join(map(str, ids)), "--out", str(out)]) == 0
    npz = load_trace(out)
    vision_language = ("vision.", "embed.spliced", "rope.position_ids", "layers.{i}.deepstack")  # Qwen3-VL only
    dense_names = [p for p in doc_names() if ".moe." not in p and not p.endswith(("k_cache", "v_cache"))
                   and p != "embed.onehot"  # V = 151936 > 4096: no one-hot rows
                   and p not in ("lens.{i}.logits", "attrib.{i}.experts")  # only when captured; MoE only
                   and not p.startswith(("train.", "dpo.", "grpo."))  # names of tracer train-step
                   and not p.startswith(vision_language)
                   and not p.startswith("quant.")]  # quantization errors: only with --reference
    expected = set()
    for pattern in dense_names:
        expected |= {pattern.replace("{i}", str(i)).replace("{s}", "0") for i in range(28)}
    assert expected <= set(npz.names)
    shapes = {"tokens": (32,), "embed.out": (32, 1024), "rope.cos": (32, 128), "layers.27.attn.q_proj": (16, 32, 128),
              "layers.27.attn.k_rope": (8, 32, 128), "layers.27.attn.scores": (16, 32, 32),
              "layers.27.attn.mask": (32, 32), "layers.27.attn.context": (16, 32, 128),
              "layers.27.mlp.act": (32, 3072), "final_norm": (32, 1024), "logits": (32, 151936),
              "sample.0.logits": (151936,), "sample.0.token_id": ()}
    for name, shape in shapes.items():
        assert npz[name].shape == shape, name
    assert npz["tokens"].tolist() == ids
    assert "wrote" in capsys.readouterr().out


def test_documented_rope_and_mask_formulas_hold_in_a_decode_step():
    """cos[t, d] = cos(pos[t]·θ^(−2j/Dh)) with j = d mod Dh/2; M[t, s] = 0 iff s ≤ t + (S − T)."""
    from tracer.commands.run import load_model, run_trace

    model = load_model("qwen3-0.6b", ["num_hidden_layers=1", "hidden_size=32", "head_dim=8", "intermediate_size=16",
                                      "vocab_size=50", "num_attention_heads=2", "num_key_value_heads=1"])
    trace = run_trace(model, [3, 1, 4], max_new_tokens=3)
    dh, theta = 8, model.cfg.rope_theta
    for prefix, positions in (("", [0, 1, 2]), ("decode.2.", [4])):
        d = np.arange(dh)
        expected = np.cos(np.array(positions)[:, None] * theta ** (-2 * (d % (dh // 2)) / dh)[None, :])
        np.testing.assert_allclose(trace[prefix + "rope.cos"], expected, atol=1e-6)
        mask = trace[prefix + "layers.0.attn.mask"]
        t_count, s_count = mask.shape
        for t in range(t_count):
            for s in range(s_count):
                assert (mask[t, s] == 0) == (s <= t + (s_count - t_count))
    assert trace["decode.2.layers.0.attn.mask"].shape == (1, 5)
    assert "(S − T)" in OPS["causal_mask"].text and "d mod Dh/2" in OPS["rope_cos"].text
