"""The config type: Hugging Face spellings in and out, overrides, validation."""

import pytest

from tracer import TracerError
from tracer.sources.config import Qwen3Config
from tracer.sources.presets import PRESETS, QWEN3_0_6B

# Qwen3-0.6B's config.json as on the Hub (seed 003), abridged to the fields that matter.
HUB_0_6B = {
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 3072,
    "num_hidden_layers": 28, "num_attention_heads": 16, "head_dim": 128, "num_key_value_heads": 8,
    "attention_bias": False, "max_position_embeddings": 40960, "rope_theta": 1000000, "rope_scaling": None,
    "hidden_act": "silu", "rms_norm_eps": 1e-06, "vocab_size": 151936, "tie_word_embeddings": True,
    "initializer_range": 0.02, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
}


def test_hub_config_reads_as_the_preset():
    assert Qwen3Config.from_hf_dict(HUB_0_6B) == QWEN3_0_6B


def test_transformers_v5_spellings():
    v5 = {k: v for k, v in HUB_0_6B.items() if k not in ("rope_theta", "head_dim")}
    v5["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0}
    cfg = Qwen3Config.from_hf_dict(v5)
    assert cfg.rope_theta == 1e6 and cfg.head_dim == 1024 // 16


def test_moe_spelling_num_local_experts():
    moe = dict(HUB_0_6B, model_type="qwen3_moe", num_local_experts=8, num_experts_per_tok=2,
               moe_intermediate_size=64, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[0])
    cfg = Qwen3Config.from_hf_dict(moe)
    assert cfg.num_experts == 8 and cfg.is_moe and not cfg.is_sparse_layer(0) and cfg.is_sparse_layer(1)


def test_round_trip_through_hf_dict():
    for preset in PRESETS.values():
        assert Qwen3Config.from_hf_dict(preset.config.to_hf_dict()) == preset.config


@pytest.mark.parametrize("change, message", [
    ({"model_type": "llama"}, "model_type 'llama'"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4}}, "rope_scaling.original_max_position_embeddings is missing"),
    ({"hidden_size": None}, "lacks hidden_size"),
])
def test_bad_hf_configs(change, message):
    d = {k: v for k, v in dict(HUB_0_6B, **change).items() if v is not None}
    with pytest.raises(TracerError, match=message):
        Qwen3Config.from_hf_dict(d)


def test_overrides_parse_json_and_strings():
    cfg = QWEN3_0_6B.with_overrides(["num_hidden_layers=2", "rope_theta=1e4", "tie_word_embeddings=false",
                                     "qk_norm=l2", "mask_value=-100", "rope_degrees_per_position=[-90,0,"
                                     + ",".join(["0"] * 62) + "]"])
    assert cfg.num_hidden_layers == 2 and cfg.rope_theta == 1e4 and cfg.tie_word_embeddings is False
    assert cfg.qk_norm == "l2" and cfg.mask_value == -100.0 and cfg.rope_degrees_per_position[0] == -90.0


@pytest.mark.parametrize("assignment, message", [
    ("tie_word_embeddings=1", "must be true or false"),
    ("num_hidden_layers=1.5", "must be a whole number"),
    ("num_hidden_layers=0", "must be positive"),
    ("head_dim=7", "must be even"),
    ("mlp_only_layers=[40]", "outside 0..27"),
    ("rope_degrees_per_position=[1,2]", "one angle per dimension pair"),
    ("hidden_act=gelu", "hidden_act 'gelu'"),
])
def test_bad_overrides(assignment, message):
    with pytest.raises(TracerError, match=message):
        QWEN3_0_6B.with_overrides([assignment])


def test_moe_validation():
    with pytest.raises(TracerError, match="num_experts_per_tok must be between 1 and num_experts"):
        QWEN3_0_6B.replace(num_experts=4, num_experts_per_tok=5, moe_intermediate_size=8)
    with pytest.raises(TracerError, match="moe_intermediate_size must be positive"):
        QWEN3_0_6B.replace(num_experts=4, num_experts_per_tok=2)


def test_gqa_groups():
    assert QWEN3_0_6B.kv_groups == 2
