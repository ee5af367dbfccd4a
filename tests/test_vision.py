"""Qwen3-VL's vision path (issue 14): preprocessing, M-RoPE, the NumPy tower against transformers, checkpoints,
the CLI and its input errors. Expected values come from transformers (its image processor, get_rope_index,
the rotary module and Qwen3VLForConditionalGeneration itself), never from the code under test."""

from __future__ import annotations

import io
import json
import struct
import zlib
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tracer import TracerError
from tracer.cli import main
from tracer.commands.run import encode_prompt, load_model, run_trace
from tracer.engine.recorder import Recorder
from tracer.traces.compare import compare_arrays
from tracer.traces.tracefile import load_trace
from tracer.vision.config import VisionConfig
from tracer.vision.mrope import mrope_tables, rope_index
from tracer.vision.placement import PLACEHOLDER
from tracer.vision.preprocess import preprocess
from tracer.vision.presets import QWEN3_VL_2B_VISION
from tracer.vision.weights import vl_weight_shapes

PIL = pytest.importorskip("PIL.Image")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    PIL.fromarray(array, mode=mode).save(buf, format="PNG") if mode else PIL.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def hf_image_processor(vc: VisionConfig):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(patch_size=vc.patch_size, temporal_patch_size=vc.temporal_patch_size,
                                    merge_size=vc.spatial_merge_size, image_mean=list(vc.image_mean),
                                    image_std=list(vc.image_std),
                                    size={"shortest_edge": vc.min_pixels, "longest_edge": vc.max_pixels})


# --- 1. preprocessing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(64, 96), (28, 28), (448, 448), (300, 500), (37, 1000)])
def test_pixel_values_and_token_counts_equal_the_transformers_processor(size):
    vc = QWEN3_VL_2B_VISION  # the real processor numbers: patch 16, merge 2, min 65536, mean = std = 0.5
    rgb = np.random.default_rng(sum(size)).integers(0, 256, size + (3,)).astype(np.uint8)
    ours = preprocess(vc, [rgb], Recorder())
    ref = hf_image_processor(vc)(images=[rgb], return_tensors="np")
    assert ours.grid_thw.tolist() == np.asarray(ref["image_grid_thw"]).tolist()
    np.testing.assert_array_equal(ours.pixel_values, np.asarray(ref["pixel_values"]))
    assert ours.token_counts(2) == [int(np.prod(g)) // 4 for g in np.asarray(ref["image_grid_thw"])]


def test_a_448_image_becomes_196_tokens_and_files_decode_like_arrays():
    vc = QWEN3_VL_2B_VISION
    rgb = np.random.default_rng(0).integers(0, 256, (448, 448, 3)).astype(np.uint8)
    from_file = preprocess(vc, [png_bytes(rgb)], Recorder())
    assert from_file.token_counts(2) == [196]
    np.testing.assert_array_equal(from_file.pixel_values, preprocess(vc, [rgb], Recorder()).pixel_values)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA"])
def test_grayscale_palette_and_alpha_images_convert_like_transformers(mode):
    vc = QWEN3_VL_2B_VISION
    rng = np.random.default_rng(3)
    base = PIL.fromarray(rng.integers(0, 256, (40, 60, 4)).astype(np.uint8), mode="RGBA").convert(mode)
    buf = io.BytesIO()
    base.save(buf, format="PNG")
    ours = preprocess(vc, [buf.getvalue()], Recorder())
    ref = hf_image_processor(vc)(images=[PIL.open(io.BytesIO(buf.getvalue()))], return_tensors="np")
    np.testing.assert_array_equal(ours.pixel_values, np.asarray(ref["pixel_values"]))


# --- 3. M-RoPE -----------------------------------------------------------------------------------------------


def test_rope_index_equals_transformers_get_rope_index():
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

    ids = np.array([7, 151652] + [151655] * 6 + [151653, 8, 9, 151652] + [151655] * 4 + [151653, 10])
    grids = [(1, 4, 6), (1, 4, 4)]
    fake = SimpleNamespace(config=SimpleNamespace(vision_config=SimpleNamespace(spatial_merge_size=2)),
                           get_vision_position_ids=partial(Qwen3VLModel.get_vision_position_ids, None))
    t_ids = torch.tensor(ids)[None]
    ref_pos, ref_delta = Qwen3VLModel.get_rope_index(fake, t_ids, (t_ids == 151655).int(),
                                                     image_grid_thw=torch.tensor(grids))
    pos, delta = rope_index(ids, ids == 151655, grids, merge=2)
    assert pos.tolist() == ref_pos[:, 0].tolist()
    assert delta == int(ref_delta)
    # image 2 starts at 9 with a 2×2 token grid (largest id 10); <|vision_end|> is 11, the last word 12
    assert pos[:, 12:].tolist() == [[9, 9, 9, 9, 11, 12], [9, 9, 10, 10, 11, 12], [9, 10, 9, 10, 11, 12]]


def test_interleaved_mrope_tables_equal_the_transformers_rotary_module():
    cfg = transformers.Qwen3VLTextConfig(head_dim=128, hidden_size=256, num_attention_heads=2,
                                         rope_parameters={"rope_type": "default", "rope_theta": 5e6,
                                                          "mrope_section": [24, 20, 20], "mrope_interleaved": True})
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRotaryEmbedding

    rot = Qwen3VLTextRotaryEmbedding(cfg)
    pos = np.array([[0, 1, 2, 2, 2, 40], [0, 1, 2, 3, 3, 40], [0, 1, 2, 3, 4, 40]])
    cos_ref, sin_ref = rot(torch.zeros(1, dtype=torch.float32), torch.tensor(pos)[:, None])
    cos, sin = mrope_tables(pos, rot.inv_freq.numpy(), (24, 20, 20))
    np.testing.assert_allclose(cos, cos_ref[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(sin, sin_ref[0].numpy(), atol=1e-6)


# --- 2/3/5. the whole model against transformers -------------------------------------------------------------


def varied_weights(model) -> dict[str, np.ndarray]:
    """Random weights with non-trivial norms and biases (the presets' ones and zeros would hide their use)."""
    rng = np.random.default_rng(1)
    out = {}
    for name, shape in vl_weight_shapes(model.cfg, model.vision).items():
        if name.endswith("bias"):
            out[name] = 0.1 * rng.standard_normal(shape)
        elif "norm" in name and "linear" not in name:
            out[name] = 1 + 0.1 * rng.standard_normal(shape)
        else:
            out[name] = (0.02 if "embed_tokens" in name else 0.1) * rng.standard_normal(shape)
    return {k: v.astype(np.float32) for k, v in out.items()}


@pytest.fixture(scope="module")
def tiny_pair():
    model = load_model("qwen3-vl-tiny")
    model.weights = varied_weights(model)
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (64, 96, 3)).astype(np.uint8), rng.integers(0, 256, (50, 40, 3)).astype(np.uint8)]
    ids = encode_prompt(model, f"Compare {PLACEHOLDER} with {PLACEHOLDER}.")
    a = run_trace(model, ids, images=images, max_new_tokens=2)
    b = run_trace(model, ids, images=images, max_new_tokens=2, backend="torch")
    return a, b


def test_every_vision_record_and_the_logits_match_transformers(tiny_pair):
    a, b = tiny_pair
    common = [n for n in a.names if n in b]
    vision = [n for n in common if n.startswith("vision.")]
    assert len(vision) > 100 and "vision.blocks.3.attn.probs" in vision
    for name in common:
        row = compare_arrays(name, np.asarray(a[name]), np.asarray(b[name]), 1e-4, 1e-5)
        assert row.verdict == "OK", (name, row)
    # NumPy-only names are the preprocessing steps the library's processor does internally
    assert {n for n in a.names if n not in b} == {f"vision.images.{k}.{s}" for k in (0, 1)
                                                 for s in ("resized", "normalized", "patches")}
    assert a.meta["generated_ids"] == b.meta["generated_ids"]


def test_images_attend_only_to_themselves_and_deepstack_touches_only_image_rows(tiny_pair):
    a, _ = tiny_pair
    probs = a["vision.blocks.0.attn.probs"]
    first = a.meta["vision"]["grid_thw"][0]
    n0 = first[1] * first[2]
    assert np.all(probs[:, :n0, n0:] == 0) and np.all(probs[:, n0:, :n0] == 0)
    ids = np.array(a.meta["token_ids"])
    delta = a["layers.0.deepstack"] - a["layers.0.resid_post"]
    assert np.all(delta[ids != 151655] == 0)
    np.testing.assert_allclose(delta[ids == 151655], a["vision.deepstack.0.out"], atol=1e-6)
    assert "layers.2.deepstack" not in a  # two taps: only the first two decoder layers get features


def test_transformers_saved_checkpoint_runs_with_its_own_logits(tmp_path):
    config = transformers.Qwen3VLConfig(
        text_config=dict(vocab_size=151936, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                         rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [4, 2, 2]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           num_position_embeddings=16, deepstack_visual_indexes=[0], patch_size=16),
        tie_word_embeddings=False)
    torch.manual_seed(0)
    hf = transformers.Qwen3VLForConditionalGeneration(config).eval()
    hf.save_pretrained(tmp_path)
    vc_proc = dict(min_pixels=4096, max_pixels=16384)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"shortest_edge": vc_proc["min_pixels"], "longest_edge": vc_proc["max_pixels"]},
         "image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    model = load_model(str(tmp_path))
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    ids = encode_prompt(model, f"{PLACEHOLDER}hi")
    trace = run_trace(model, ids, images=[image], capture=["logits"])
    full = trace.meta["token_ids"]
    proc = hf_image_processor(model.vision)(images=[image], return_tensors="pt")
    t = torch.tensor([full])
    with torch.no_grad():
        ref = hf(input_ids=t, pixel_values=proc["pixel_values"], image_grid_thw=proc["image_grid_thw"],
                 mm_token_type_ids=(t == 151655).long()).logits[0].numpy()
    row = compare_arrays("logits", trace["logits"], ref, 1e-4, 1e-5)
    assert row.verdict == "OK", row


def test_export_writes_a_checkpoint_transformers_loads(tmp_path):
    out = tmp_path / "ckpt"
    assert main(["export", "qwen3-vl-tiny", "--set", "num_hidden_layers=2", "--out", str(out)]) == 0
    _, info = transformers.Qwen3VLForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not any(info.values())
    reloaded = load_model(str(out))
    preset = load_model("qwen3-vl-tiny", ["num_hidden_layers=2"])
    assert reloaded.vision == preset.vision
    name = "model.visual.blocks.1.attn.qkv.weight"
    np.testing.assert_array_equal(reloaded.weights[name], preset.weights[name])


# --- 6. CLI --------------------------------------------------------------------------------------------------


def test_cli_trace_with_images_and_chat(tmp_path, capsys):
    img = tmp_path / "a.png"
    img.write_bytes(png_bytes(np.full((64, 64, 3), 200, dtype=np.uint8)))
    out = tmp_path / "t.npz"
    assert main(["trace", "qwen3-vl-tiny", "--image", str(img), "--image", str(img), "--prompt", "Same?", "--chat",
                 "--out", str(out), "--capture", "rope.*", "--capture", "vision.grid_thw"]) == 0
    npz = np.load(out)
    meta = load_trace(out).meta
    labels = meta["token_labels"]
    user = labels.index("user")
    assert labels[user + 2:user + 4] == ["<|vision_start|>", "<|image_pad|>"]  # images first in the user turn
    assert labels.count("<|image_pad|>") == 2 * 4 and meta["prompt"].count(PLACEHOLDER) == 2
    assert npz["rope.position_ids"].shape == (3, len(labels))


def _truncated_png(tmp_path: Path) -> Path:
    data = png_bytes(np.zeros((64, 64, 3), dtype=np.uint8))
    path = tmp_path / "cut.png"
    path.write_bytes(data[:len(data) // 2])
    return path


def _huge_header_png(tmp_path: Path) -> Path:
    """A PNG whose header claims 12000 × 12000 pixels but holds almost no data: decoding it would fail, so the
    cap must be checked from the header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))
    return path


def _sixteen_bit(tmp_path: Path) -> Path:
    path = tmp_path / "deep.png"
    PIL.fromarray(np.full((40, 40), 40000, dtype=np.uint16)).save(path)
    return path


@pytest.mark.parametrize("case, needle", [
    ("missing", "does not exist"),
    ("text", "not an image"),
    ("truncated", "truncated"),
    ("huge", "more than the cap"),
    ("16bit", "8-bit"),
    ("text_model", "text-only model"),
    ("too_many", "more images than placeholders"),
])
def test_bad_image_input_is_one_line_and_exit_2(tmp_path, capsys, case, needle):
    good = tmp_path / "ok.png"
    good.write_bytes(png_bytes(np.zeros((32, 32, 3), dtype=np.uint8)))
    bad_text = tmp_path / "notes.png"
    bad_text.write_text("not a picture")
    image = {"missing": tmp_path / "nope.png", "text": bad_text, "truncated": _truncated_png(tmp_path),
             "huge": _huge_header_png(tmp_path), "16bit": _sixteen_bit(tmp_path)}.get(case, good)
    model = "qwen3-0.6b" if case == "text_model" else "qwen3-vl-tiny"
    prompt = f"{PLACEHOLDER} one" if case == "too_many" else "hi"
    extra = ["--image", str(good)] if case == "too_many" else []
    args = ["trace", model, "--image", str(image), *extra, "--prompt", prompt, "--out", str(tmp_path / "x.npz")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_info_counts_the_2b_parameters_as_transformers_does(capsys):
    from tracer.vision.config import to_hf_dict

    model = load_model("qwen3-vl-2b")
    config = transformers.Qwen3VLConfig(**{k: v for k, v in to_hf_dict(model.cfg, model.vision).items()
                                           if k not in ("architectures", "model_type")})
    with torch.device("meta"):
        hf = transformers.Qwen3VLForConditionalGeneration(config)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    vis = hf.model.visual
    assert main(["info", "qwen3-vl-2b"]) == 0
    out = capsys.readouterr().out
    assert (f"vision parameters: {count(vis):,} (merger {count(vis.merger):,}, "
            f"DeepStack mergers {count(vis.deepstack_merger_list):,})") in out
    assert f"total with the text model: {count(hf):,}" in out  # lm_head tied: counted once


# --- 2. window attention (Qwen2.5-VL's, as a teaching variant) -------------------------------------------------


@pytest.mark.parametrize("grids, window", [([(1, 12, 12)], 112), ([(1, 16, 16)], 112), ([(1, 8, 20), (2, 6, 4)], 56),
                                           ([(1, 28, 28)], 448)])
def test_window_ids_lay_out_the_windows_of_transformers_get_vision_window_index(grids, window):
    from transformers.vision_utils import get_vision_window_index

    from tracer.vision.ops import window_ids

    grid = np.array(grids)
    ids = window_ids(grid, merge=2, window_size=window, patch=14)[::4]  # one per merged token
    ref_index, ref_cu = get_vision_window_index(torch.tensor(grids), 2, window, 14)
    assert np.argsort(ids, kind="stable").tolist() == ref_index.tolist()  # tokens grouped window by window
    cu = np.concatenate([[0], np.cumsum(np.bincount(ids)[np.bincount(ids) > 0] * 4)])
    assert cu.tolist() == ref_cu.tolist()


def test_window_attention_variant_confines_windowed_blocks(tmp_path):
    model = load_model("qwen3-vl-tiny", ["vision.window_size=64", "vision.fullatt_block_indexes=[3]",
                                         "vision.max_pixels=65536"])
    image = np.random.default_rng(4).integers(0, 256, (128, 192, 3)).astype(np.uint8)
    trace = run_trace(model, encode_prompt(model, f"{PLACEHOLDER}?"), images=[image])
    windows = trace["vision.window_ids"]
    assert windows.max() + 1 == 6  # 128×192 pixels in 64-pixel windows: 2 × 3
    same = windows[:, None] == windows[None, :]
    assert np.all(trace["vision.blocks.0.attn.probs"][:, ~same] == 0)
    assert np.all(trace["vision.blocks.3.attn.probs"][:, ~same] > 0)  # a full-attention block
    with pytest.raises(TracerError, match="teaching variant"):
        run_trace(model, encode_prompt(model, f"{PLACEHOLDER}?"), images=[image], backend="torch")
