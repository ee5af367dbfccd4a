"""Qwen3-VL models: the presets on seeded random weights, Hugging Face checkpoint directories, and export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tracer import Message, TracerError
from tracer.sources import source_label
from tracer.sources.checkpoint import CheckpointWeights, export_checkpoint
from tracer.vision.config import VisionConfig, from_hf_dict, split_overrides, to_hf_dict
from tracer.vision.presets import VISION_PRESETS
from tracer.vision.weights import VLRandomWeights, vl_weight_shapes


def _checkpoint_config(directory: Path) -> dict[str, Any] | None:
    """The directory's config.json when it is a Qwen3-VL one, else None."""
    path = directory / "config.json"
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):  # read_config then names what is wrong
        return None
    return raw if isinstance(raw, dict) and raw.get("model_type") == "qwen3_vl" else None


def is_vision_model(name: str) -> bool:
    """A Qwen3-VL preset name or a directory holding a qwen3_vl config.json."""
    return name in VISION_PRESETS or (Path(name).is_dir() and _checkpoint_config(Path(name)) is not None)


def check_pair(cfg: Any, vc: VisionConfig) -> None:
    """The text model and the vision tower fit together."""
    if sum(vc.mrope_section) != cfg.head_dim // 2:
        raise TracerError.of("vision.err_mrope_section", section=list(vc.mrope_section), half=cfg.head_dim // 2)
    if vc.out_hidden_size != cfg.hidden_size:
        raise TracerError.of("vision.err_out_hidden", out=vc.out_hidden_size, hidden=cfg.hidden_size)
    if len(vc.deepstack_visual_indexes) > cfg.num_hidden_layers:
        raise TracerError.of("vision.err_taps", taps=len(vc.deepstack_visual_indexes),
                             layers=cfg.num_hidden_layers)
    for key in ("image_token_id", "vision_start_token_id", "vision_end_token_id"):
        if not 0 <= getattr(vc, key) < cfg.vocab_size:
            raise TracerError.of("vision.err_token_id", key=key, value=getattr(vc, key), last=cfg.vocab_size - 1)


def load_vision_model(name: str, overrides: list[str], seed: int, dtype: np.dtype) -> Any:
    """A Qwen3-VL preset (seeded random weights) or checkpoint directory, as a ``tracer.commands.run.Model``."""
    from tracer.commands.run import Model

    if name in VISION_PRESETS:
        preset = VISION_PRESETS[name]
        cfg, vc = split_overrides(preset.text, preset.vision, overrides)
        check_pair(cfg, vc)
        source = str(Message("sources.source_random", seed=seed))
        return Model(name, cfg, VLRandomWeights(cfg, vc, seed, dtype), source, seed,
                     notes=preset.notes, vision=vc)
    directory = Path(name)
    raw = _checkpoint_config(directory)
    pre_path = directory / "preprocessor_config.json"
    pre = None
    if pre_path.is_file():
        try:
            pre = json.loads(pre_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise TracerError.of("errors.invalid_json_detail", path=pre_path, detail=exc) from None
    cfg, vc = from_hf_dict(raw or {}, pre)
    cfg, vc = split_overrides(cfg, vc, overrides)
    check_pair(cfg, vc)
    weights = CheckpointWeights(directory, cfg, dtype, shapes=vl_weight_shapes(cfg, vc))
    return Model(str(directory), cfg, weights, source_label("checkpoint", directory), None, directory=directory,
                 vision=vc)


def export_vision_checkpoint(model: Any, directory: Path, dtype: str = "float32",
                             max_shard_bytes: int = 2 * 1024**3) -> list[Path]:
    """Write a Qwen3-VL model as a directory transformers loads with Qwen3VLForConditionalGeneration:
    config.json, preprocessor_config.json, safetensors and (for Qwen's vocabulary) the tokenizer."""
    cfg, vc = model.cfg, model.vision
    if vc.window_size:
        raise TracerError.of("vision.err_window_export")
    files = export_checkpoint(cfg, model.weights, directory, dtype, max_shard_bytes,
                              shapes=vl_weight_shapes(cfg, vc), hf_config=to_hf_dict(cfg, vc))
    (directory / "preprocessor_config.json").write_text(json.dumps(vc.preprocessor_dict(), indent=2) + "\n",
                                                        encoding="utf-8")
    return files


def vision_card(model: Any, lang: str = "en") -> str:
    """Parameter counts of the vision tower, its mergers and the whole vision-language model, in ``lang``."""
    from tracer.i18n import translator
    from tracer.sources.info import count_params
    from tracer.vision.forward import vision_weight_shapes

    tr = translator(lang)
    vc = model.vision
    shapes = vision_weight_shapes(vc)
    size = {n: int(np.prod(s)) for n, s in shapes.items()}
    merger = sum(v for n, v in size.items() if ".merger." in n)
    deepstack = sum(v for n, v in size.items() if ".deepstack_merger_list." in n)
    vision = sum(size.values())
    text = count_params(model.cfg).total
    return "\n".join([
        tr("vision.card_tower", depth=vc.depth, width=vc.hidden_size, heads=vc.num_heads, patch=vc.patch_size,
           merge=vc.spatial_merge_size, taps=list(vc.deepstack_visual_indexes), sections=list(vc.mrope_section)),
        tr("vision.card_params", vision=vision, merger=merger, deepstack=deepstack),
        tr("vision.card_total", total=vision + text)])
