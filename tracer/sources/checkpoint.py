"""Hugging Face checkpoint directories: ``config.json`` + safetensors, read memory-mapped, and written.

Reading keeps the file memory-mapped: a float32 tensor is a read-only view of the file (no copy); bfloat16
and float16 tensors are widened to the engine's dtype one tensor at a time, when the forward first asks
for them. Pickled ``.bin`` / ``.pt`` weights are refused: loading them runs arbitrary code.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tracer import Message, TracerError
from tracer.sources.config import Qwen3Config
from tracer.sources.weights import weight_shapes
from tracer.text.tokenizer import VOCAB_SIZE, write_tokenizer_files

SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}
PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def read_config(directory: Path) -> Qwen3Config:
    """The directory's ``config.json`` as a Qwen3Config, with a one-line error for anything wrong."""
    if not directory.is_dir():
        raise TracerError.of("errors.checkpoint_missing", path=directory)
    path = directory / "config.json"
    if not path.is_file():
        raise TracerError.of("errors.no_config_json", path=directory)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TracerError.of("errors.invalid_json", path=path, kind=type(exc).__name__) from None
    if not isinstance(raw, dict):
        raise TracerError.of("errors.json_not_object", path=path)
    return Qwen3Config.from_hf_dict(raw)


def weight_files(directory: Path, warnings: list[Message] | None = None) -> dict[str, Path]:
    """Tensor name -> safetensors file, from ``model.safetensors.index.json`` or the single file.

    The one file-selection rule of both backends: the index wins over a ``model.safetensors`` beside it (the
    ignored file is named in ``warnings``, a message shown in the reader's language). Shard names must be plain
    file names inside the folder, and every file a regular file there (no ``..``, absolute path, link out, FIFO or
    device).
    """
    from tracer.safety.safefiles import escape_controls, read_json_text, regular_file

    index = directory / "model.safetensors.index.json"
    single = directory / "model.safetensors"
    root = _link_root(directory)
    if index.exists():
        if not regular_file(index, root):
            raise TracerError.of("safety.not_regular", path=escape_controls(str(index)))
        if single.exists() and warnings is not None:
            warnings.append(Message("safety.index_wins", directory=directory, ignored=single.name))
        try:
            data = read_json_text(index.read_text(encoding="utf-8"), str(index))
        except (OSError, UnicodeDecodeError) as exc:
            raise TracerError.of("errors.bad_index", path=index, kind=type(exc).__name__) from None
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise TracerError.of("safety.weight_map", index=index)
        files = {}
        for name, file in weight_map.items():
            bad = (not isinstance(file, str) or not file or "/" in file or "\\" in file or file in (".", "..")
                   or "\x00" in file)
            if bad:
                raise TracerError.of("safety.shard_name", index=index.name, name=escape_controls(str(name))[:80],
                                     file=escape_controls(str(file))[:80])
            files[name] = directory / file
        for path in set(files.values()):
            if path.exists() and not regular_file(path, root):
                raise TracerError.of("safety.not_regular", path=escape_controls(str(path)))
        return files
    if single.exists():
        if not regular_file(single, root):
            raise TracerError.of("safety.not_regular", path=escape_controls(str(single)))
        return {name: single for name in _header(single)}
    pickled = sorted(p.name for pattern in PICKLED for p in directory.glob(pattern))
    if pickled:
        raise TracerError.of("errors.pickled_weights", path=directory, file=pickled[0])
    raise TracerError.of("errors.no_safetensors", path=directory)


def _link_root(directory: Path) -> Path:
    """The folder a checkpoint's files may link into: the folder itself, or for a Hugging Face cache snapshot
    (``models--ORG--NAME/snapshots/REV``, whose files link to ``../../blobs``) the repo's cache folder."""
    if directory.resolve().parent.name == "snapshots" and directory.resolve().parent.parent.name.startswith("models--"):
        return directory.resolve().parent.parent
    return directory


def _header(path: Path) -> dict[str, Any]:
    """The safetensors header (checked by the safetensors library): name -> dtype, shape, data_offsets."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy"):
            pass
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
    except FileNotFoundError:
        raise TracerError.of("errors.weight_file_missing", path=path) from None
    except (SafetensorError, OSError, ValueError, struct.error) as exc:
        raise TracerError.of("errors.bad_safetensors", path=path, detail=exc) from None
    header.pop("__metadata__", None)
    for info in header.values():
        info["start"] = 8 + length + info["data_offsets"][0]
    return header


class CheckpointWeights(Mapping[str, np.ndarray]):
    """A checkpoint's tensors by Hugging Face name, memory-mapped and converted on first use.

    ``stream=True`` keeps no converted tensor: each access reads the mapped bytes again and, once converted,
    releases the file pages (``tracer.sources.stream``), so only the layer being computed is resident.
    """

    def __init__(self, directory: Path, cfg: Qwen3Config, dtype: np.dtype = np.float32,
                 shapes: Mapping[str, tuple[int, ...]] | None = None, stream: bool = False):
        self.directory = directory
        self.dtype = np.dtype(dtype)
        self.stream = stream
        self.warnings: list[Message] = []
        files = weight_files(directory, self.warnings)
        self._headers = {path: _header(path) for path in sorted(set(files.values()))}
        self._files = files
        self._maps: dict[Path, np.memmap] = {}
        self._made: dict[str, np.ndarray] = {}
        self._shapes = dict(shapes) if shapes is not None else weight_shapes(cfg)
        for name, shape in self._shapes.items():
            if name not in files or name not in self._headers[files[name]]:
                raise TracerError.of("errors.checkpoint_lacks_tensor", path=directory, name=name, shape=list(shape))
            info = self._headers[files[name]][name]
            if tuple(info["shape"]) != shape:
                raise TracerError.of("errors.tensor_shape", name=name, found=info["shape"], expected=list(shape))
            if info["dtype"] not in SAFETENSORS_DTYPES:
                raise TracerError.of("errors.tensor_dtype", name=name, dtype=info["dtype"])

    def __getitem__(self, name: str) -> np.ndarray:
        if self.stream:
            return self._read(name)
        if name not in self._made:
            self._made[name] = self._read(name)
        return self._made[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)

    def stored_dtypes(self) -> set[str]:
        return {self._headers[self._files[n]][n]["dtype"] for n in self._shapes}

    def stored_bits(self, name: str) -> float:
        """Bits per weight of a tensor as stored in the file (16 for bfloat16 and float16)."""
        return 8.0 * np.dtype(SAFETENSORS_DTYPES[self._headers[self._files[name]][name]["dtype"]]).itemsize

    def _read(self, name: str) -> np.ndarray:
        path = self._files[name]
        info = self._headers[path][name]
        if path not in self._maps:
            self._maps[path] = np.memmap(path, dtype=np.uint8, mode="r")
        start = info["start"]
        end = start + info["data_offsets"][1] - info["data_offsets"][0]
        stored = SAFETENSORS_DTYPES[info["dtype"]]
        if self.stream:
            value = self._read_streamed(self._maps[path], start, stored, info["shape"])
        else:
            raw = self._maps[path][start:end].view(stored).reshape(info["shape"])
            value = raw if raw.dtype == self.dtype else _widen(raw, self.dtype)
        if not np.isfinite(value).all():
            raise TracerError.of("safety.weight_nonfinite", name=name, source=path.name)
        return value

    def _read_streamed(self, mapped: np.memmap, start: int, stored: Any, shape: list[int]) -> np.ndarray:
        """Convert a slab at a time into a new array, releasing each slab's file pages once converted, so
        the peak is the converted tensor plus one slab (not plus the whole mapped tensor)."""
        from tracer.sources.stream import release_pages

        out = np.empty(shape, dtype=self.dtype)
        flat = out.reshape(-1)
        item = np.dtype(stored).itemsize
        for first in range(0, flat.size, STREAM_SLAB):
            last = min(flat.size, first + STREAM_SLAB)
            flat[first:last] = _widen(mapped[start + first * item:start + last * item].view(stored), self.dtype)
            release_pages(mapped, start + first * item, start + last * item)
        return out


STREAM_SLAB = 1 << 22  # elements converted at a time by a streamed read (16 MiB of float32)


def _widen(raw: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Stored values (float32, float16, or bfloat16 bit patterns as uint16) -> ``dtype``."""
    if raw.dtype == np.uint16:  # bfloat16 is the top half of a float32: shift it back, exactly
        wide = raw.astype(np.uint32)
        wide <<= 16  # in place: no second full-size temporary
        return wide.view(np.float32).astype(dtype, copy=False)
    return raw.astype(dtype)


def bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even.

    >>> bfloat16_bits(np.array([1.0, 1.00390625, -2.5], dtype=np.float32))
    array([16256, 16256, 49184], dtype=uint16)
    """
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))
    return (rounded >> 16).astype(np.uint16)


def export_checkpoint(cfg: Qwen3Config, weights: Mapping[str, np.ndarray], directory: Path, dtype: str = "float32",
                      max_shard_bytes: int = 2 * 1024**3, tokenizer: bool = True,
                      shapes: Mapping[str, tuple[int, ...]] | None = None,
                      hf_config: dict[str, Any] | None = None) -> list[Path]:
    """Write a Hugging Face checkpoint directory: config.json, safetensors (sharded past max_shard_bytes),
    and, for Qwen's real vocabulary, tokenizer.json and tokenizer_config.json with the chat template."""
    from safetensors import TensorSpec, serialize_file

    if dtype not in ("float32", "bfloat16"):
        raise TracerError.of("errors.export_dtype", dtype=dtype)
    directory.mkdir(parents=True, exist_ok=True)
    hf = dict(hf_config) if hf_config is not None else cfg.to_hf_dict()
    hf["torch_dtype"] = dtype
    shapes = dict(shapes) if shapes is not None else weight_shapes(cfg)
    (directory / "config.json").write_text(json.dumps(hf, indent=2) + "\n", encoding="utf-8")
    shards: list[list[str]] = [[]]
    size = 0
    item = 4 if dtype == "float32" else 2
    for name, shape in shapes.items():
        nbytes = int(np.prod(shape)) * item
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    names = (["model.safetensors"] if len(shards) == 1 else
             [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))])
    written = []
    for shard, filename in zip(shards, names):
        keep = {}
        for name in shard:
            w = np.ascontiguousarray(weights[name], dtype=np.float32)
            keep[name] = w if dtype == "float32" else bfloat16_bits(w)
        specs = {n: TensorSpec(dtype="float32" if dtype == "float32" else "bfloat16", shape=a.shape,
                               data_ptr=a.ctypes.data, data_len=a.nbytes) for n, a in keep.items()}
        serialize_file(specs, str(directory / filename), metadata={"format": "pt"})
        written.append(directory / filename)
    if len(shards) > 1:
        total = sum(int(np.prod(s)) * item for s in shapes.values())
        index = {"metadata": {"total_size": total},
                 "weight_map": {n: f for shard, f in zip(shards, names) for n in shard}}
        (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    if tokenizer and cfg.vocab_size >= VOCAB_SIZE:
        from tracer.text.chat import official_template

        write_tokenizer_files(directory, official_template())
    return written
