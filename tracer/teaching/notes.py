"""A trace's notes and the known errata of the course documents, in the reader's language, by page.

A preset's notes travel in the trace (``meta["notes"]``, English); each known note has a catalog key
(``notes.json``) and the pages it concerns. Notes this table does not know are shown as written.
"""

from __future__ import annotations

from typing import Any

from tracer.i18n import t
from tracer.sources.presets import PRESETS
from tracer.vision.presets import VISION_PRESETS

# preset -> (catalog key, kind, pages) for each of its notes, in the preset's order
PRESET_NOTES: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "toy-dense": [("toy_qk_rope", "note", ("run", "steps", "attention", "rope")),
                  ("toy_dense_head", "note", ("run", "steps", "pipeline"))],
    "toy-moe": [("toy_moe_experts", "note", ("run", "steps", "moe")),
                ("toy_moe_suppress", "note", ("run", "sampling")),
                ("erratum_seed004_rounding", "erratum", ("run", "steps", "moe", "compare"))],
    "qwen3-0.6b": [("erratum_seed003_params", "erratum", ("run", "pipeline"))],
    "qwen3-30b-a3b": [("qwen3_30b_depth", "note", ("run", "moe"))],
    "qwen3-vl-tiny": [("vl_tiny_positions", "note", ("run",))],
}

# errata and differences of the course documents that hold for every trace, by page
DOCUMENT_NOTES: list[tuple[str, str, tuple[str, ...]]] = [
    ("seed001_rope_pairs", "note", ("rope",)),
    ("seed004_qk_norm", "note", ("attention",)),
    ("seed001_temperature", "erratum", ("sampling",)),
]


def preset_note(model: str, note: str, lang: str = "en") -> tuple[str, str, tuple[str, ...]]:
    """(kind, text in ``lang``, pages) of one of a preset's notes (as the trace keeps it, in English); a note this
    table does not know is a ``note`` shown as written, on the run page.

    >>> preset_note("toy-moe", "Sampling suppresses <bos> and <eos> (§4-7-1).", "zh-Hant")[:2] == (
    ...     "note", t("notes.toy_moe_suppress", "zh-Hant"))
    True
    """
    known = PRESET_NOTES.get(model, [])
    preset = PRESETS.get(model) or VISION_PRESETS.get(model)
    texts = list(preset.notes) if preset else []
    if note in texts and texts.index(note) < len(known):
        key, kind, pages = known[texts.index(note)]
        return kind, t(f"notes.{key}", lang), pages
    return "note", note, ("run",)


def notes_for(meta: dict[str, Any], page: str, lang: str = "en") -> list[tuple[str, str]]:
    """(kind, text) of every note of this trace, and every document note, that concerns ``page``."""
    out: list[tuple[str, str]] = []
    for note in meta.get("notes") or []:
        kind, text, pages = preset_note(str(meta.get("model")), note, lang)
        if page in pages:
            out.append((kind, text))
    cfg = meta.get("config") or {}
    for key, kind, pages in DOCUMENT_NOTES:
        if page in pages and (key != "seed004_qk_norm" or cfg.get("qk_norm") == "l2"):
            out.append((kind, t(f"notes.{key}", lang)))
    return out
