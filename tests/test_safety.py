"""Server defaults, the resource guard's arithmetic, and O(1) config validation."""

from __future__ import annotations

import math
import os
import time

import pytest

from tracer import TracerError
from tracer.cli import build_parser, main
from tracer.commands.run import load_model, run_trace
from tracer.safety.budget import check_budget, estimate, parameter_count, parse_size, trace_bytes
from tracer.safety.limits import tensor_count
from tracer.sources.config import Qwen3Config
from tracer.sources.presets import QWEN3_0_6B, QWEN3_30B_A3B, get_preset
from tracer.sources.weights import weight_shapes


class Exec(BaseException):
    """Raised instead of replacing the test process with a server."""


@pytest.fixture
def no_exec(monkeypatch):
    calls = []

    def fake(path, argv, env=None):
        calls.append((argv, env))
        raise Exec()

    monkeypatch.setattr(os, "execve", fake)
    monkeypatch.delenv("TRACER_APP_PASSWORD", raising=False)
    return calls


def test_default_bind_address_is_loopback(no_exec, tmp_path, monkeypatch):
    parser = build_parser()
    assert parser.parse_args(["app"]).address == "127.0.0.1"
    assert parser.parse_args(["notebooks"]).address == "127.0.0.1"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    with pytest.raises(Exec):
        main(["app"])
    argv, env = no_exec[-1]
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[argv.index("--server.maxUploadSize") + 1] == "200"
    assert env["QWEN3_TRACER_TRACES_DIR"] == str((tmp_path / "qwen3-tracer" / "traces").resolve())
    assert env["TRACER_APP_PASSWORD"] == ""
    with pytest.raises(Exec):
        main(["notebooks"])
    argv, env = no_exec[-1]
    assert "--ServerApp.ip=127.0.0.1" in argv and "--IdentityProvider.token=" in argv


def test_a_room_address_takes_the_class_password(no_exec, tmp_path, monkeypatch):
    with pytest.raises(Exec):
        main(["app", "--address", "0.0.0.0", "--password", "s3cret", "--traces-dir", str(tmp_path),
              "--max-upload-mb", "20", "--max-memory", "1G", "--workers", "3"])
    argv, env = no_exec[-1]
    assert argv[argv.index("--server.address") + 1] == "0.0.0.0"
    assert "s3cret" not in argv  # handed over in the environment, not on the command line
    assert env["TRACER_APP_PASSWORD"] == "s3cret" and env["QWEN3_TRACER_MAX_MEMORY"] == str(1024**3)
    assert env["QWEN3_TRACER_WORKERS"] == "3" and argv[argv.index("--server.maxUploadSize") + 1] == "20"
    monkeypatch.setenv("TRACER_APP_PASSWORD", "from-env")
    with pytest.raises(Exec):
        main(["notebooks", "--address", "0.0.0.0"])
    argv, env = no_exec[-1]
    assert "--ServerApp.ip=0.0.0.0" in argv and env["JUPYTER_TOKEN"] == "from-env"
    assert not any(a.startswith("--IdentityProvider.token") for a in argv)


def _shrunk(**changes) -> Qwen3Config:
    small = dict(num_hidden_layers=3, hidden_size=32, head_dim=8, intermediate_size=48, vocab_size=97,
                 num_attention_heads=4, num_key_value_heads=2)
    return QWEN3_0_6B.replace(**{**small, **changes})


CONFIGS = {
    "qwen3-0.6b": QWEN3_0_6B,
    "qwen3-30b-a3b": QWEN3_30B_A3B,
    "untied": _shrunk(tie_word_embeddings=False),
    "moe-every-other": _shrunk(num_experts=6, num_experts_per_tok=2, moe_intermediate_size=16,
                               decoder_sparse_step=2, num_hidden_layers=5, mlp_only_layers=(1, 2)),
    "toy-moe": get_preset("toy-moe").config,
    "toy-dense": get_preset("toy-dense").config,
}


@pytest.mark.parametrize("name", CONFIGS)
def test_closed_form_counts_match_the_tensor_list(name):
    """The O(1) counts agree with enumerating every tensor and every layer (an independent, looped count)."""
    cfg = CONFIGS[name]
    shapes = weight_shapes(cfg)
    assert tensor_count(cfg) == len(shapes)
    assert parameter_count(cfg) == sum(math.prod(s) for s in shapes.values())
    assert cfg.sparse_layer_count() == sum(cfg.is_sparse_layer(i) for i in range(cfg.num_hidden_layers))


def test_qwen3_0_6b_parameters_match_the_published_count():
    assert parameter_count(QWEN3_0_6B) == 596_049_920  # the model card's 0.6B, counted by transformers


@pytest.mark.parametrize("changes", [{"num_hidden_layers": 10**9}, {"num_hidden_layers": 2**40},
                                     {"num_experts": 10**8, "num_experts_per_tok": 2, "moe_intermediate_size": 8}])
def test_config_validation_is_constant_time(changes):
    start = time.perf_counter()
    with pytest.raises(TracerError):
        QWEN3_30B_A3B.replace(**changes)
    assert time.perf_counter() - start < 0.05


@pytest.mark.parametrize("preset, overrides, capture", [
    ("qwen3-0.6b", ["num_hidden_layers=2", "hidden_size=64", "head_dim=16", "intermediate_size=96",
                    "vocab_size=300"], None),
    ("qwen3-0.6b", ["num_hidden_layers=3", "hidden_size=64", "head_dim=16", "intermediate_size=96",
                    "vocab_size=300"], ["layers.1.*", "logits"]),
    ("qwen3-30b-a3b", ["num_hidden_layers=2", "hidden_size=64", "head_dim=16", "moe_intermediate_size=32",
                       "vocab_size=300", "num_experts=16", "num_experts_per_tok=4"], None),
])
def test_trace_estimate_is_close_to_the_records_a_run_keeps(preset, overrides, capture):
    model = load_model(preset, overrides)
    ids = list(range(1, 13))
    trace = run_trace(model, ids, max_new_tokens=4, capture=capture)
    actual = sum(trace[n].nbytes for n in trace.names)
    predicted = trace_bytes(model.cfg, len(ids), 4, capture)
    assert 0.75 * actual <= predicted <= 1.25 * actual, (predicted, actual)


def test_cache_records_of_a_long_generation_share_their_buffers_and_the_estimate_bounds_them():
    model = load_model("qwen3-0.6b", ["num_hidden_layers=2", "hidden_size=32", "head_dim=8", "intermediate_size=48",
                                      "vocab_size=300"])
    capture = ["decode.*.layers.*.attn.k_cache", "decode.*.layers.*.attn.v_cache"]
    trace = run_trace(model, list(range(1, 13)), max_new_tokens=60, capture=capture)
    views = [trace[n] for n in trace.names]
    held = {id(v.base if v.base is not None else v): (v.base if v.base is not None else v).nbytes for v in views}
    actual, copies = sum(held.values()), sum(v.nbytes for v in views)
    predicted = trace_bytes(model.cfg, 12, 60, capture, cache_views=True)
    assert actual <= predicted <= 4 * actual and copies > 10 * actual, (actual, predicted, copies)


def test_a_run_over_budget_is_refused_with_the_way_to_shrink_it():
    est = estimate(QWEN3_30B_A3B, 16)
    assert est.weights == parameter_count(QWEN3_30B_A3B) * 4
    with pytest.raises(TracerError, match=r"over the 4\.0 GiB budget.*num_hidden_layers=2.*--capture"):
        check_budget(est, 4 * 1024**3)
    check_budget(estimate(get_preset("toy-dense").config, 4), 4 * 1024**3)


def test_sizes():
    assert parse_size("2G") == 2 * 1024**3 and parse_size("1.5 MiB") == 1536 * 1024 and parse_size("77") == 77
    for bad in ("", "-1G", "0", "1X", "nan", "1e9"):
        with pytest.raises(TracerError):
            parse_size(bad)


def test_info_prints_the_estimate(capsys):
    assert main(["info", "qwen3-30b-a3b", "--tokens", "64", "--max-memory", "8G"]) == 0
    out = capsys.readouterr().out
    assert "estimate for 64 prompt tokens" in out and "over budget" in out and "--set num_hidden_layers=2" in out
    assert main(["info", "toy-dense", "--tokens", "4"]) == 0
    assert "fits" in capsys.readouterr().out
