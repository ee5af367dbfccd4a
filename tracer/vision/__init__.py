"""Qwen3-VL's vision path (seed 002): preprocessing, the vision tower, the merger, M-RoPE and DeepStack."""
