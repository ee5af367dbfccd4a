"""Named Qwen3-VL models on seeded random weights: a tiny one for tests and the real 2B shapes."""

from __future__ import annotations

from dataclasses import dataclass

from tracer.sources.config import Qwen3Config
from tracer.vision.config import VisionConfig

QWEN3_VL_TINY_TEXT = Qwen3Config(
    vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=2, head_dim=32, max_position_embeddings=4096, rope_theta=5_000_000.0,
    rms_norm_eps=1e-6, tie_word_embeddings=True,
)
QWEN3_VL_TINY_VISION = VisionConfig(
    depth=4, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64, num_position_embeddings=36,
    deepstack_visual_indexes=(1, 2), mrope_section=(6, 5, 5), min_pixels=4096, max_pixels=16384,
)

# Qwen3-VL-2B-Instruct (public config.json / MaxText qwen3-vl-2b.yml; facts note §2).
QWEN3_VL_2B_TEXT = Qwen3Config(
    vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
    num_key_value_heads=8, head_dim=128, max_position_embeddings=262144, rope_theta=5_000_000.0,
    rms_norm_eps=1e-6, tie_word_embeddings=True,
)
QWEN3_VL_2B_VISION = VisionConfig(
    depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
    num_position_embeddings=2304, deepstack_visual_indexes=(5, 11, 17), mrope_section=(24, 20, 20),
)


@dataclass(frozen=True)
class VisionPreset:
    text: Qwen3Config
    vision: VisionConfig
    description: str
    notes: tuple[str, ...] = ()


VISION_PRESETS: dict[str, VisionPreset] = {
    "qwen3-vl-tiny": VisionPreset(
        QWEN3_VL_TINY_TEXT, QWEN3_VL_TINY_VISION,
        "Qwen3-VL in miniature: 4 vision blocks of width 64, DeepStack taps 1 and 2, a 3-layer text model; "
        "images kept between 4096 and 16384 pixels (at most 16 tokens each)",
        ("The 6×6 position table is small so that its bilinear interpolation is exercised.",),
    ),
    "qwen3-vl-2b": VisionPreset(
        QWEN3_VL_2B_TEXT, QWEN3_VL_2B_VISION,
        "Qwen3-VL-2B shape (24 vision blocks of width 1024, 28 text layers of width 2048), seeded random weights",
        ("Full size is 2.1 billion parameters; shrink it, e.g. --set num_hidden_layers=2 --set vision.depth=6 "
         "--set vision.deepstack_visual_indexes=[1,3,5].",
         "Attention probabilities grow as the square of the patches: a 448×448 image has 784 patches, "
         "39 MB of probabilities per block.",),
    ),
}
