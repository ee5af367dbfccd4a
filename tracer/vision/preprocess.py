"""Images to patches, the way Qwen2-VL's image processor (which Qwen3-VL uses) does it, every step recorded:
decode (with a pixel cap read from the header first) -> RGB -> smart_resize (bicubic) -> rescale and
normalise -> patches in merge-block order (``vision.pixel_values`` [N, C·T·P·P], ``vision.grid_thw``)."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracer import TracerError, os_reason
from tracer.engine.recorder import Recorder
from tracer.vision import ops as vops
from tracer.vision.config import VisionConfig

ImageSource = str | Path | bytes | np.ndarray

# PIL modes refused: more than 8 bits per channel would be silently clipped by an RGB conversion.
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F", "RGBA;16", "RGB;16")


@dataclass
class Patches:
    """The processor's output for a list of images."""

    pixel_values: np.ndarray  # [N, C·T·P·P] float32
    grid_thw: np.ndarray  # [images, 3] int64
    sizes: list[tuple[int, int]]  # each image's (height, width) before resizing
    resized: list[tuple[int, int]]  # and after

    def token_counts(self, merge: int) -> list[int]:
        """How many ``<|image_pad|>`` tokens each image becomes: t·gh·gw / merge²."""
        return [int(t * h * w) // (merge * merge) for t, h, w in self.grid_thw]


def _label(source: ImageSource) -> str:
    return "the image array" if isinstance(source, np.ndarray) else (
        "the image bytes" if isinstance(source, bytes) else f"image {source}")


def load_rgb(source: ImageSource, max_pixels: int) -> np.ndarray:
    """A PNG/JPEG/… file, its bytes, or an array [H, W], [H, W, 3] or [H, W, 4] (uint8) -> [H, W, 3] uint8.

    The size is read from the header and checked against ``max_pixels`` before any pixel is decoded.
    Grayscale, palette and alpha images become RGB as transformers makes them (alpha composited on white);
    16-bit and floating-point images are refused.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise TracerError.of("vision.err_pillow") from None
    label = _label(source)
    if isinstance(source, np.ndarray):
        arr = source
        if arr.dtype != np.uint8:
            raise TracerError.of("vision.err_dtype", label=label, dtype=arr.dtype)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or 0 in arr.shape:
            raise TracerError.of("vision.err_shape", label=label, shape=list(source.shape))
        if arr.shape[0] * arr.shape[1] > max_pixels:
            raise TracerError.of("vision.err_too_big", label=label, w=arr.shape[1], h=arr.shape[0],
                                 pixels=arr.shape[0] * arr.shape[1], cap=max_pixels)
        image = Image.fromarray(np.ascontiguousarray(arr[:, :, 0] if arr.shape[2] == 1 else arr))
    else:
        if isinstance(source, bytes):
            stream = io.BytesIO(source)
        else:
            path = Path(source)
            if not path.is_file():
                raise TracerError.of("vision.err_missing", label=label)
            try:
                stream = io.BytesIO(path.read_bytes())
            except OSError as exc:
                raise TracerError.of("vision.err_unreadable", label=label, reason=os_reason(exc)) from None
        try:
            with warnings.catch_warnings():  # the size is checked against our own cap just below
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(stream)  # reads the header only
        except Image.DecompressionBombError:
            raise TracerError.of("vision.err_bomb", label=label, cap=max_pixels) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise TracerError.of("vision.err_not_image", label=label) from None
        width, height = image.size
        if width * height > max_pixels:
            raise TracerError.of("vision.err_too_big", label=label, w=width, h=height, pixels=width * height,
                                 cap=max_pixels)
        if image.mode in _WIDE_MODES:
            raise TracerError.of("vision.err_wide", label=label, mode=image.mode)
        try:
            image.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise TracerError.of("vision.err_truncated", label=label, reason=exc) from None
    if image.mode != "RGB":  # transformers' convert_rgb: composite on white, then drop alpha
        background = Image.new("RGBA", image.size, (255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def resize(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """[H, W, 3] uint8 -> [height, width, 3] uint8 with Pillow's bicubic filter (an unchanged size is a copy)."""
    from PIL import Image

    if rgb.shape[:2] == (height, width):
        return rgb.copy()
    return np.asarray(Image.fromarray(rgb).resize((width, height), resample=Image.Resampling.BICUBIC))


def decode_images(vc: VisionConfig, images: list[ImageSource], rec: Recorder) -> list[np.ndarray]:
    """Each image decoded to RGB (``vision.images.{k}.rgb``), its size and aspect ratio checked."""
    out = []
    for k, source in enumerate(images):
        rgb = rec(f"vision.images.{k}.rgb", load_rgb(source, vc.max_image_pixels))
        h, w = rgb.shape[:2]
        if max(h, w) / min(h, w) > 200:
            raise TracerError.of("vision.err_aspect", label=_label(source), w=w, h=h)
        out.append(rgb)
    return out


def preprocess(vc: VisionConfig, images: list[ImageSource], rec: Recorder) -> Patches:
    """Each image through the processor, recorded under ``vision.images.{k}.…``, then all patches stacked."""
    pixel_rows, grids, sizes, resized_sizes = [], [], [], []
    for k, rgb in enumerate(decode_images(vc, images, rec)):
        n = f"vision.images.{k}"
        h, w = rgb.shape[:2]
        rh, rw = vops.smart_resize(h, w, vc.factor, vc.min_pixels, vc.max_pixels)
        small = rec(f"{n}.resized", resize(rgb, rh, rw), rgb, op="resize_bicubic")
        normed = rec(f"{n}.normalized", vops.rescale_normalize(small, vc.image_mean, vc.image_std), small)
        rows = rec(f"{n}.patches", vops.patchify(normed, vc.patch_size, vc.temporal_patch_size,
                                                 vc.spatial_merge_size), normed)
        pixel_rows.append(rows)
        grids.append((1, rh // vc.patch_size, rw // vc.patch_size))
        sizes.append((h, w))
        resized_sizes.append((rh, rw))
    grid = rec("vision.grid_thw", np.array(grids, dtype=np.int64), *pixel_rows)
    pixels = rec("vision.pixel_values", np.concatenate(pixel_rows), *pixel_rows)
    return Patches(pixels, grid, sizes, resized_sizes)
