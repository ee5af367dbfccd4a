"""The model card: exact parameter counts, checked against arithmetic on the published shapes."""

from tracer.cli import main
from tracer.sources.info import count_params
from tracer.sources.presets import PRESETS


def test_qwen3_0_6b_exact_count():
    # seed 003's module listing: embedding 151936×1024; per layer q 1024→2048, k/v 1024→1024, o 2048→1024,
    # q_norm/k_norm 128 each, gate/up 1024→3072, down 3072→1024, two RMSNorms of 1024; final norm; tied head
    layer = 1024 * 2048 + 2 * 1024 * 1024 + 2048 * 1024 + 2 * 128 + 3 * 1024 * 3072 + 2 * 1024
    expected = 151936 * 1024 + 28 * layer + 1024
    counts = count_params(PRESETS["qwen3-0.6b"].config)
    assert counts.total == expected == 596_049_920
    assert counts.lm_head == 0 and counts.embedding == 151936 * 1024
    assert counts.active == counts.total


def test_qwen3_30b_a3b_total_and_active():
    cfg = PRESETS["qwen3-30b-a3b"].config
    attention = 2048 * 4096 + 2 * 2048 * 512 + 4096 * 2048 + 2 * 128
    expert = 3 * 2048 * 768
    layer = attention + 2048 * 128 + 128 * expert + 2 * 2048
    total = 2 * 151936 * 2048 + 48 * layer + 2048
    counts = count_params(cfg)
    assert counts.total == total
    assert counts.active == total - 48 * 120 * expert
    assert round(counts.total / 1e9, 1) == 30.5 and round(counts.active / 1e9, 1) == 3.4


def test_cli_info(capsys):
    assert main(["info", "qwen3-0.6b"]) == 0
    out = capsys.readouterr().out
    assert "596,049,920" in out and "tied" in out and "591M" in out
    assert main(["info", "toy-moe"]) == 0
    assert "active per token" in capsys.readouterr().out
