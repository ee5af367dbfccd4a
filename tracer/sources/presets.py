"""Named models: the two hand-worked toys of seed 004 and full-size Qwen3 configs.

The toy weights are typed in from seed 004 exactly as the document prints them, in its row-vector
orientation ``[in, out]``, and transposed once into the checkpoint layout ``[out, in]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tracer import TracerError
from tracer.sources.config import Qwen3Config

TOY_VOCAB = ("<bos>", "明天", "交", "報告", "請", "<eos>")


@dataclass(frozen=True)
class Preset:
    """A config, how to get its weights (None: seeded random), its toy vocabulary, and tokens never sampled."""

    config: Qwen3Config
    description: str
    weights: Callable[[], dict[str, np.ndarray]] | None = None
    vocab: tuple[str, ...] | None = None
    suppress_tokens: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


def _m(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


# Seed 004 §3-4-1 / §4-4-1: embedding table E [V=6, D=4].
_E = _m([[1, 1, 1, 1], [2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 2], [-1, -1, -1, -1]])
# §3-5-3 / §4-5-3: projections, hidden 4 -> head dim 2, printed as [in, out].
_WQ = _m([[1, 0], [0, 1], [1, 0], [0, 1]])
_WK = _m([[1, 0], [0, 1], [0, 1], [1, 0]])
_WV = _m([[1, 0], [1, 0], [0, 1], [0, 1]])


def _attention(wo: np.ndarray) -> dict[str, np.ndarray]:
    p = "model.layers.0"
    return {
        "model.embed_tokens.weight": _E,
        f"{p}.input_layernorm.weight": np.ones(4),
        f"{p}.self_attn.q_proj.weight": _WQ.T,
        f"{p}.self_attn.k_proj.weight": _WK.T,
        f"{p}.self_attn.v_proj.weight": _WV.T,
        f"{p}.self_attn.o_proj.weight": wo.T,
        f"{p}.self_attn.q_norm.weight": np.ones(2),
        f"{p}.self_attn.k_norm.weight": np.ones(2),
        f"{p}.post_attention_layernorm.weight": np.ones(4),
        "model.norm.weight": np.ones(4),  # the seed has no final norm; used only with --set final_norm=true
    }


def _toy_dense_weights() -> dict[str, np.ndarray]:
    p = "model.layers.0"
    w = _attention(_m([[0, 0, 0, 2], [0, 0, 0, 2]]))  # §3-5-7 W_O [2, 4]
    only_last = _m([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])  # §3-5-8 W_gate = W_up
    w[f"{p}.mlp.gate_proj.weight"] = only_last.T
    w[f"{p}.mlp.up_proj.weight"] = only_last.T
    # §3-5-8 adds F straight back to the residual: the down projection is the identity matrix.
    w[f"{p}.mlp.down_proj.weight"] = np.eye(4)
    return w  # §3-6-2: tied, W_vocab = Eᵀ


def _toy_moe_weights() -> dict[str, np.ndarray]:
    p = "model.layers.0"
    w = _attention(_m([[1, 0, 0, 0], [0, 1, 1, 0]]))  # §4-5-8 W_O [2, 4]
    w[f"{p}.mlp.gate.weight"] = _m([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0]]).T  # §4-5-10 W_r [4, 3]
    w[f"{p}.mlp.gate.bias"] = np.array([0, 0, 1.2])  # §4-5-10 b
    experts = [  # §4-5-11..13: (W1_e [4, 2], W2_e [2, 4])
        (_m([[1, 0], [0, 0], [0, 0], [0, 0]]), _m([[1, 0, 0, 0], [0, 0, 0, 0]])),
        (_m([[0, 0], [1, 0], [0, 1], [0, 0]]), _m([[0, 1, 0, 0], [0, 0, 1, 0]])),
        (_m([[1, 0], [1, 0], [1, 0], [0, 0]]), _m([[0, 0, 0, 3], [0, 0, 0, 0]])),
    ]
    for e, (w1, w2) in enumerate(experts):
        w[f"{p}.mlp.experts.{e}.up_proj.weight"] = w1.T
        w[f"{p}.mlp.experts.{e}.down_proj.weight"] = w2.T
    # §4-6-2: untied W_vocab [4, 6]
    w["lm_head.weight"] = _m([[1, 2, 0, 0, 0, -1], [1, 0, 2, 0, 0, -1], [1, 0, 0, 2, 0, -1], [1, 0, 0, 0, 5, -1]]).T
    return w


_TOY = dict(
    vocab_size=6, hidden_size=4, intermediate_size=4, num_hidden_layers=1, num_attention_heads=1,
    num_key_value_heads=1, head_dim=2, max_position_embeddings=16, rms_norm_eps=1e-6,
    qk_norm="l2", rope_degrees_per_position=(-90.0,), mask_value=-100.0, final_norm=False,
)

QWEN3_0_6B = Qwen3Config(
    vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
    num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
    rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
)

QWEN3_30B_A3B = Qwen3Config(
    vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=48,
    num_attention_heads=32, num_key_value_heads=4, head_dim=128, max_position_embeddings=40960,
    rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=False, num_experts=128,
    num_experts_per_tok=8, moe_intermediate_size=768, norm_topk_prob=True, decoder_sparse_step=1,
)


def _dense(hidden: int, intermediate: int, layers: int, heads: int, tied: bool) -> Qwen3Config:
    """A dense Qwen3 of the published family: head_dim 128, 8 KV heads, θ = 1e6, 40,960 positions."""
    return Qwen3Config(
        vocab_size=151936, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
        rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=tied,
    )


# The published config.json of each size (Hugging Face Hub, Qwen/Qwen3-*), and the Qwen3 technical report table.
QWEN3_FAMILY: dict[str, Qwen3Config] = {
    "qwen3-1.7b": _dense(2048, 6144, 28, 16, tied=True),
    "qwen3-4b": _dense(2560, 9728, 36, 32, tied=True),
    "qwen3-8b": _dense(4096, 12288, 36, 32, tied=False),
    "qwen3-14b": _dense(5120, 17408, 40, 40, tied=False),
    "qwen3-32b": _dense(5120, 25600, 64, 64, tied=False),
    "qwen3-235b-a22b": Qwen3Config(
        vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=94,
        num_attention_heads=64, num_key_value_heads=4, head_dim=128, max_position_embeddings=40960,
        rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=False, num_experts=128,
        num_experts_per_tok=8, moe_intermediate_size=1536, norm_topk_prob=True, decoder_sparse_step=1,
    ),
}

PRESETS: dict[str, Preset] = {
    "toy-dense": Preset(
        Qwen3Config(**_TOY, tie_word_embeddings=True),
        "Seed 004 §3: one dense block, hidden size 4, one head, the document's weights",
        weights=_toy_dense_weights, vocab=TOY_VOCAB,
        notes=("QK-Norm is plain L2 normalisation and RoPE turns one pair by -90° per position, as in the seed.",
               "No final norm; the down projection is the identity matrix, so F is added to the residual as is."),
    ),
    "toy-moe": Preset(
        Qwen3Config(**_TOY, tie_word_embeddings=False, num_experts=3, num_experts_per_tok=2,
                    moe_intermediate_size=2, norm_topk_prob=True, expert_act="relu", router_bias=True),
        "Seed 004 §4: one MoE block, 3 ReLU experts with top-2 routing and a router bias, the document's weights",
        weights=_toy_moe_weights, vocab=TOY_VOCAB, suppress_tokens=(0, 5),
        notes=("Experts are two-matrix ReLU MLPs (up, down) and the router has a bias, as in the seed.",
               "Sampling suppresses <bos> and <eos> (§4-7-1).",
               "Erratum: §4 computes by hand with 3-decimal numbers, §3 does not. §4's context row 3 "
               "(1.452, 1.458) comes from the rounded attention weights; the exact value is (1.450, 1.457), "
               "as §3 prints for the same attention. The drift grows through the MoE: the logit of 請 is 10.638 "
               "on paper and 10.623 exactly (請 still wins). Trace with --round 3 to reproduce the paper's numbers."),
    ),
    "qwen3-0.6b": Preset(
        QWEN3_0_6B, "Qwen3-0.6B shape (seed 003), seeded random weights",
        notes=("Seed 003 estimates about 591M parameters (155M + 28 × 15.6M); the exact count is 596,049,920: "
               "a layer has 15,730,944 parameters, including q_norm and k_norm.",),
    ),
    "qwen3-30b-a3b": Preset(
        QWEN3_30B_A3B, "Qwen3-30B-A3B shape (128 experts, top-8), seeded random weights",
        notes=("At full depth this is 30 billion parameters; shrink it, e.g. --set num_hidden_layers=2. "
               "Random expert weights are made only for the experts the tokens are routed to.",),
    ),
}
PRESETS.update({name: Preset(cfg, f"Qwen3-{name.split('-', 1)[1].upper()} shape (published config.json), seeded random "
                                  "weights; shrink it (--set num_hidden_layers=N) to trace")
                for name, cfg in QWEN3_FAMILY.items()})


def get_preset(name: str) -> Preset:
    """The preset of this name, or a TracerError listing the known ones."""
    if name not in PRESETS:
        from tracer.vision.presets import VISION_PRESETS

        raise TracerError.of("sources.unknown_model", name=name, presets=", ".join([*PRESETS, *VISION_PRESETS]))
    return PRESETS[name]
