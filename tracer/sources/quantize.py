"""Writing GGUF files (``tracer quantize``, ``tracer export --format gguf``) and measuring what quantization
costs (``tracer trace QUANTIZED --reference MODEL``).

Block quantization cuts each weight row into blocks of 32 and stores, per block, one fp16 scale ``d`` and
small integer codes ``q``: Q8_0 ``x ≈ d·q`` (q int8), Q4_0 ``x ≈ d·(q − 8)`` (q 4-bit), Q5_0 ``x ≈ d·(q − 16)``,
Q4_1 / Q5_1 ``x ≈ d·q + m``. The quantizers are the ``gguf`` package's own (its Q8_0 is bit-exact with
ggml's reference), and for the K-quants Q4_K, Q5_K, Q6_K (blocks of 256) the project's (``kquants``).
As llama.cpp does, 1-D tensors (norms) and the MoE router stay F32, and a tensor whose rows are not a
whole number of blocks is kept F32.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tracer import os_reason
from tracer.sources import error
from tracer.sources.config import Qwen3Config
from tracer.sources.gguf import gguf_name, require_gguf
from tracer.sources.kquants import QUANTIZERS
from tracer.sources.weights import weight_shapes

# ggml type -> general.file_type (llama.cpp's LlamaFileType) for the types written here; a file of one
# K-quant type is llama.cpp's "_S" (small) variant of it
FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q4_K": 14, "Q5_K": 16,
              "Q6_K": 18, "BF16": 32}
QUANT_TYPES = tuple(FILE_TYPES)


def tensor_type(hf_name: str, shape: tuple[int, ...], qtype: str) -> str:
    """The type one tensor gets in a ``qtype`` file: F32 for 1-D tensors, the router, and rows that do not
    fill whole blocks; ``qtype`` for the rest.

    >>> tensor_type("model.layers.0.input_layernorm.weight", (64,), "Q8_0")
    'F32'
    >>> tensor_type("model.layers.0.mlp.up_proj.weight", (128, 64), "Q4_0"), tensor_type("x", (8, 48), "Q4_0")
    ('Q4_0', 'F32')
    """
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    if len(shape) < 2 or hf_name.endswith("mlp.gate.weight"):
        return "F32"
    block, _ = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    return qtype if shape[-1] % block == 0 else "F32"


def kept_unquantized(cfg: Qwen3Config, qtype: str) -> tuple[list[str], int]:
    """GGUF tensors a ``qtype`` file keeps in F32 only because their rows do not fill whole blocks, and the
    block size; refused when no tensor at all could be quantized."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, _ = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    if block == 1:  # F32, F16, BF16: every tensor fits
        return [], block
    eligible = [(g, names[0], shape) for g, names, shape in _gguf_tensors(cfg)
                if len(shape) >= 2 and not names[0].endswith("mlp.gate.weight")]
    kept = [(g, shape) for g, hf, shape in eligible if tensor_type(hf, shape, qtype) == "F32"]
    if eligible and len(kept) == len(eligible):
        raise error("quant_no_tensor", type=qtype, tensor=kept[0][0], row=kept[0][1][-1], block=block)
    return [g for g, _ in kept], block


def check_exportable(cfg: Qwen3Config) -> None:
    """GGUF's qwen3 / qwen3moe metadata cannot express seed 004's teaching variants or dense MoE layers."""
    variants = [name for name, bad in (
        ("qk_norm", cfg.qk_norm != "rms"), ("rope_degrees_per_position", cfg.rope_degrees_per_position is not None),
        ("mask_value", cfg.mask_value is not None), ("expert_act", cfg.expert_act != "swiglu"),
        ("router_bias", cfg.router_bias), ("final_norm", not cfg.final_norm),
        ("mlp_only_layers", cfg.is_moe and any(not cfg.is_sparse_layer(i) for i in range(cfg.num_hidden_layers))),
        ("use_sliding_window", cfg.use_sliding_window),
        ("rope_scaling", cfg.rope_scaling is not None and (cfg.rope_scaling.rope_type not in ("linear", "yarn") or any(
            getattr(cfg.rope_scaling, f) is not None for f in ("attention_factor", "mscale", "mscale_all_dim",
                                                               "truncate")))),
    ) if bad]
    if variants:
        raise error("gguf_cannot_express", fields=", ".join(variants))


def write_gguf(cfg: Qwen3Config, weights: Mapping[str, np.ndarray], path: Path, qtype: str = "F32",
               name: str = "qwen3-tracer", tokenizer: bool = True, chat_template: str | None = None) -> dict[str, int]:
    """Write a GGUF file as llama.cpp's converter does; returns how many tensors got each type.

    The file is written to a temporary name and renamed into place, so a failure leaves no half file.
    """
    gguf = require_gguf()
    if qtype not in QUANT_TYPES:
        raise error("quant_type_unknown", type=qtype, supported=", ".join(QUANT_TYPES))
    check_exportable(cfg)
    kept_unquantized(cfg, qtype)
    arch = "qwen3moe" if cfg.is_moe else "qwen3"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch, use_temp_file=True)
    writer.add_type("model")
    writer.add_name(name)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_theta)
    if cfg.rope_scaling is not None:
        scaling = cfg.rope_scaling
        writer.add_rope_scaling_type(gguf.RopeScalingType(scaling.rope_type))
        writer.add_rope_scaling_factor(scaling.factor)
        if scaling.original_max_position_embeddings is not None:
            writer.add_rope_scaling_orig_ctx_len(scaling.original_max_position_embeddings)
        if scaling.beta_fast is not None:
            writer.add_rope_scaling_yarn_beta_fast(scaling.beta_fast)
        if scaling.beta_slow is not None:
            writer.add_rope_scaling_yarn_beta_slow(scaling.beta_slow)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    if cfg.is_moe:
        writer.add_expert_count(cfg.num_experts)
        writer.add_expert_used_count(cfg.num_experts_per_tok)
        writer.add_expert_feed_forward_length(cfg.moe_intermediate_size)
        writer.add_bool(f"{arch}.norm_top_k_prob", cfg.norm_topk_prob)
    writer.add_file_type(FILE_TYPES[qtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if tokenizer:
        from tracer.sources.vocab import qwen_gguf_vocab
        from tracer.text.tokenizer import SPECIAL_IDS

        tokens, types, merges = qwen_gguf_vocab(cfg.vocab_size)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("qwen2")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        writer.add_eos_token_id(SPECIAL_IDS["<|im_end|>"])
        writer.add_pad_token_id(SPECIAL_IDS["<|endoftext|>"])
        writer.add_bos_token_id(SPECIAL_IDS["<|endoftext|>"])
        writer.add_add_bos_token(False)
        if chat_template:
            writer.add_chat_template(chat_template)
    counts: dict[str, int] = {}
    try:
        for gname, hf_names, shape in _gguf_tensors(cfg):
            value = np.stack([np.asarray(weights[n], dtype=np.float32) for n in hf_names]) if len(hf_names) > 1 \
                else np.ascontiguousarray(weights[hf_names[0]], dtype=np.float32)
            kind = tensor_type(hf_names[0], shape, qtype)
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "F32":
                writer.add_tensor(gname, value)
            else:
                qt = gguf.GGMLQuantizationType[kind]
                blocks = QUANTIZERS[kind](value) if kind in QUANTIZERS else gguf.quants.quantize(value, qt)
                writer.add_tensor(gname, blocks, raw_dtype=qt)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except OSError as exc:
        raise error("cannot_write", path=path, detail=os_reason(exc)) from None
    finally:
        tmp.unlink(missing_ok=True)
    return counts


def _gguf_tensors(cfg: Qwen3Config) -> list[tuple[str, list[str], tuple[int, ...]]]:
    """Each GGUF tensor of this config: its name, the Hugging Face tensors it holds, one HF tensor's shape."""
    grouped: dict[str, tuple[list[str], tuple[int, ...]]] = {}
    for hf, shape in weight_shapes(cfg).items():
        gname, _ = gguf_name(hf)
        grouped.setdefault(gname, ([], shape))[0].append(hf)
    return [(g, names, shape) for g, (names, shape) in grouped.items()]


def error_stats(weight: np.ndarray, reference: np.ndarray, bits: float) -> np.ndarray:
    """[max |w − r|, mean |w − r|, ‖w − r‖_F / ‖r‖_F, bits per weight] of a dequantized weight.

    >>> error_stats(np.array([1.0, 2.0]), np.array([1.0, 2.5]), 8.5).round(4).tolist()
    [0.5, 0.25, 0.1857, 8.5]
    """
    diff = np.asarray(weight, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    norm = float(np.linalg.norm(np.asarray(reference, dtype=np.float64)))
    rel = float(np.linalg.norm(diff)) / norm if norm > 0 else float(np.linalg.norm(diff))
    return np.array([np.abs(diff).max(), np.abs(diff).mean(), rel, bits], dtype=np.float64)


def quant_errors(model: Any, reference: Any, capture: list[str] | None = None) -> dict[str, np.ndarray]:
    """``quant.{tensor}.error`` for every weight of ``model``: its stored type's error against ``reference``."""
    shapes, ref_shapes = weight_shapes(model.cfg), weight_shapes(reference.cfg)
    if shapes != ref_shapes:
        differ = next(n for n in {**shapes, **ref_shapes} if shapes.get(n) != ref_shapes.get(n))
        raise error("reference_mismatch", model=model.name, reference=reference.name, tensor=differ,
                    shape=list(shapes.get(differ, ())), ref_shape=list(ref_shapes.get(differ, ())))
    stored_bits = getattr(model.weights, "stored_bits", None)
    out = {}
    for name in shapes:
        record = f"quant.{name}.error"
        if capture is not None and not any(fnmatch.fnmatchcase(record, p) for p in capture):
            continue
        weight = model.weights[name]
        bits = stored_bits(name) if stored_bits is not None else 8.0 * weight.dtype.itemsize
        out[record] = error_stats(weight, reference.weights[name], bits)
    return out


def with_quant_errors(trace: Any, model: Any, reference: Any, capture: list[str] | None = None) -> Any:
    """The trace plus ``quant.{w}.error`` records of ``model``'s weights against ``reference``."""
    from tracer.engine.recorder import Recorder
    from tracer.traces.tracefile import Trace, record_meta

    rec = Recorder()
    for record, stats in quant_errors(model, reference, capture).items():
        rec(record, stats, record.removeprefix("quant.").removesuffix(".error"), op="quant_error")
    records = {name: trace[name] for name in trace.names}
    records.update(rec.records)
    meta = {**trace.meta, "reference": reference.name, "records": trace.meta["records"] + record_meta(rec)}
    return Trace.in_memory(records, meta)
