"""A trace's notes and the known errata of the course documents, in the reader's language, by page.

A preset's notes travel in the trace (``meta["notes"]``, English); each known note has a catalog key
(``notes.json``) and the pages it concerns. Notes this table does not know are shown as written.
"""

from __future__ import annotations

from typing import Any

from tracer.i18n import t
from tracer.sources.presets import PRESETS

# preset -> (catalog key, kind, pages) for each of its notes, in the preset's order
PRESET_NOTES: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "toy-dense": [("toy_qk_rope", "note", ("run", "steps", "attention", "rope")),
                  ("toy_dense_head", "note", ("run", "steps", "pipeline"))],
    "toy-moe": [("toy_moe_experts", "note", ("run", "steps", "moe")),
                ("toy_moe_suppress", "note", ("run", "sampling")),
                ("erratum_seed004_rounding", "erratum", ("run", "steps", "moe", "compare"))],
    "qwen3-0.6b": [("erratum_seed003_params", "erratum", ("run", "pipeline"))],
    "qwen3-30b-a3b": [("qwen3_30b_depth", "note", ("run", "moe"))],
}

# errata and differences of the course documents that hold for every trace, by page
DOCUMENT_NOTES: list[tuple[str, str, tuple[str, ...]]] = [
    ("seed001_rope_pairs", "note", ("rope",)),
    ("seed004_qk_norm", "note", ("attention",)),
    ("seed001_temperature", "erratum", ("sampling",)),
]


def notes_for(meta: dict[str, Any], page: str, lang: str = "en") -> list[tuple[str, str]]:
    """(kind, text) of every note of this trace, and every document note, that concerns ``page``."""
    out: list[tuple[str, str]] = []
    known = PRESET_NOTES.get(str(meta.get("model")), [])
    preset = PRESETS.get(str(meta.get("model")))
    texts = list(preset.notes) if preset else []
    for note in meta.get("notes") or []:
        if note in texts and texts.index(note) < len(known):
            key, kind, pages = known[texts.index(note)]
            if page in pages:
                out.append((kind, t(f"notes.{key}", lang)))
        elif page == "run":
            out.append(("note", note))
    cfg = meta.get("config") or {}
    for key, kind, pages in DOCUMENT_NOTES:
        if page in pages and (key != "seed004_qk_norm" or cfg.get("qk_norm") == "l2"):
            out.append((kind, t(f"notes.{key}", lang)))
    return out
