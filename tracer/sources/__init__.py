"""Where a model comes from: its config, the presets, its weights, and the places people keep them (checkpoint
folders, GGUF files, the Hugging Face hub cache and Ollama's store).

``resolve(name)`` turns a MODEL argument into a place on disk (one resolver, used by ``run.load_model`` and
so by every command that takes a model):

========================  ===========================================================================
MODEL                     meaning
========================  ===========================================================================
a preset name             ``toy-dense``, ``qwen3-0.6b`` … (seeded random or fixed weights; not here)
a folder                  a Hugging Face checkpoint: ``config.json`` + safetensors
``FILE.gguf``             a GGUF file (llama.cpp, LM Studio; any quantization the ``gguf`` package reads)
``hf:ORG/NAME[@REV]``     a repo in the Hugging Face hub cache (``HF_HUB_CACHE`` / ``HF_HOME``), offline
``ollama:NAME[:TAG]``     a model pulled by Ollama (``OLLAMA_MODELS`` or ``~/.ollama/models``)
========================  ===========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracer import Message, TracerError


def error(key: str, /, **values: Any) -> TracerError:
    """A one-line input error whose text lives in the ``sources`` language catalog."""
    return TracerError.of(f"sources.{key}", **values)


@dataclass
class Location:
    """A resolved MODEL: a checkpoint folder or a GGUF file, plus what an Ollama manifest adds."""

    kind: str
    """``dir`` (checkpoint folder) or ``gguf`` (one GGUF file)."""
    path: Path
    label: str
    """How the source is described in traces and ``tracer info``."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Ollama: ``params`` (dict), ``system``, ``template`` (Go text), ``license`` (list of texts)."""


def source_label(kind: str, path: Path) -> str:
    """How a checkpoint folder (``kind`` ``checkpoint``) or a GGUF file (``gguf``) is described in a trace's
    ``source``: English, as files keep it (``source_text`` shows it in another language)."""
    return str(Message(f"sources.source_{kind}", path=path))


def source_text(source: str, lang: str) -> str:
    """A model's ``source`` (English, as traces keep it) in ``lang``; a source of another form as written.

    >>> source_text("seeded random weights (seed 3)", "zh-Hans"), source_text("hf:Qwen/Qwen3-0.6B", "zh-Hant")
    ('固定种子的随机权重(种子 3)', 'hf:Qwen/Qwen3-0.6B')
    """
    from tracer.i18n import from_english

    keys = ("sources.source_random", "sources.source_seed004", "sources.source_checkpoint", "sources.source_gguf")
    message = from_english(source, keys)
    return message.text(lang) if message is not None else source


def looks_like_source(name: str) -> bool:
    """True for MODEL strings that name a place on disk rather than a preset."""
    return (name.startswith(("hf:", "ollama:")) or name.endswith(".gguf") or "/" in name or name.startswith(".")
            or Path(name).exists())


def resolve(name: str) -> Location:
    """Where MODEL's weights are (the file or folder checked to exist), with a one-line error if nowhere."""
    if name.startswith("hf:"):
        from tracer.sources.hf_cache import resolve_hf

        return resolve_hf(name[3:])
    if name.startswith("ollama:"):
        from tracer.sources.ollama import resolve_ollama

        return resolve_ollama(name[7:])
    path = Path(name)
    if path.is_file():
        from tracer.sources.gguf import is_gguf

        if is_gguf(path):
            return Location("gguf", path, source_label("gguf", path))
        raise error("not_a_model_file", path=path)
    if name.endswith(".gguf"):
        raise error("gguf_missing", path=path)
    return Location("dir", path, source_label("checkpoint", path))
