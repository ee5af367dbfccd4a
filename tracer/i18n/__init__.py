"""Language catalogs: every string a user sees, in English, Simplified and Traditional Chinese.

A catalog is one folder per language (``en``, ``zh-Hans``, ``zh-Hant``) holding one JSON file per area of
the product (``cli.json``, ``app.json``, ``schema.json`` …). A key is ``AREA.KEY``: ``cli.token_count`` is
the key ``token_count`` of ``cli.json``. Values are ``str.format`` templates.

>>> t("i18n.language_name", "zh")
'简体中文'
>>> t("i18n.unknown_language", "en", lang="fr", choices="en, zh-Hans, zh-Hant")
"unknown language 'fr'; choose one of en, zh-Hans, zh-Hant"
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from tracer import Message, TracerError

LANGS = ("en", "zh-Hans", "zh-Hant")
ALIASES = {"zh": "zh-Hans", "zh-cn": "zh-Hans", "zh-sg": "zh-Hans", "zh-hans": "zh-Hans",
           "zh-tw": "zh-Hant", "zh-hk": "zh-Hant", "zh-mo": "zh-Hant", "zh-hant": "zh-Hant", "en": "en"}
LANG_CHOICES = ("en", "zh", "zh-Hans", "zh-Hant")
"""What ``--lang`` accepts: the three catalogs, and ``zh`` for Simplified Chinese."""

_FOLDER = Path(__file__).resolve().parent


def normalize(lang: str | None) -> str:
    """A language tag as its catalog name: ``zh`` and ``zh-CN`` -> ``zh-Hans``, ``zh-TW`` -> ``zh-Hant``.

    >>> normalize("zh"), normalize("zh-TW"), normalize(None)
    ('zh-Hans', 'zh-Hant', 'en')
    """
    if lang is None:
        return "en"
    found = ALIASES.get(str(lang).strip().lower())
    if found is None:
        raise TracerError.of("i18n.unknown_language", lang=lang, choices=", ".join(LANGS))
    return found


@lru_cache(maxsize=None)
def catalog(lang: str) -> Mapping[str, str]:
    """Every key of one language, read once (a read-only mapping: nothing can change it at run time)."""
    entries: dict[str, str] = {}
    for path in sorted((_FOLDER / lang).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for key, value in data.items():
            entries[f"{path.stem}.{key}"] = value
    return MappingProxyType(entries)


def t(key: str, lang: str | None = "en", /, **values: Any) -> str:
    """The text of ``key`` in ``lang`` with ``values`` filled in (always formatted, values or not); English
    where a catalog lacks the key (the catalog test fails on that, so it never ships)."""
    code = normalize(lang)
    text = catalog(code).get(key)
    if text is None:
        text = catalog("en")[key]
    return text.format(**values)  # always: a catalog value is a template, so ``{{`` is a literal ``{``


def translator(lang: str | None) -> Any:
    """``t`` bound to one language: ``tr = translator("zh"); tr("app.language")``."""
    code = normalize(lang)

    def tr(key: str, /, **values: Any) -> str:
        return t(key, code, **values)

    return tr


def from_english(text: str, keys: Iterable[str]) -> Message | None:
    """The message, among ``keys``, whose English text is ``text`` (its values read back as strings); None when
    none is. For texts a file keeps in English (a trace's ``source``), shown in the reader's language.

    >>> from_english("checkpoint /m", ["sources.source_gguf", "sources.source_checkpoint"]).text("zh-Hant")
    '檢查點 /m'
    >>> from_english("somewhere else", ["sources.source_checkpoint"]) is None
    True
    """
    for key in keys:
        pattern, names = "", set()
        for literal, name, _, _ in string.Formatter().parse(catalog("en")[key]):
            pattern += re.escape(literal)
            if name is not None:
                pattern += f"(?P={name})" if name in names else f"(?P<{name}>.*?)"
                names.add(name)
        found = re.fullmatch(pattern, text, re.DOTALL)
        if found is None:
            continue
        message = Message(key, **found.groupdict())
        try:
            if str(message) == text:  # a value with a format spec (``{n:,}``) cannot be read back: skipped
                return message
        except (ValueError, TypeError):
            continue
    return None


def width(text: str) -> int:
    """Columns a text takes in a terminal: CJK characters take two.

    >>> width("layer"), width("第 3 层")
    (5, 7)
    """
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, columns: int) -> str:
    """``text`` followed by spaces up to ``columns`` terminal columns (``str.ljust`` for CJK text too).

    >>> pad("总计", 6) + "|"
    '总计  |'
    """
    return text + " " * max(0, columns - width(text))
