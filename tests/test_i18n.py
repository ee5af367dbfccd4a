"""The language catalogs: every language has every key, with the same placeholders."""

import json
import string
from pathlib import Path

import pytest

from tracer import TracerError
from tracer.i18n import LANGS, catalog, normalize, t

FOLDER = Path(__file__).resolve().parents[1] / "tracer" / "i18n"


def _fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def test_every_language_has_the_same_keys_and_placeholders():
    keys = {lang: set(catalog(lang)) for lang in LANGS}
    for lang in LANGS:
        assert keys[lang] == keys["en"], f"{lang}: missing {sorted(keys['en'] - keys[lang])[:5]}, " \
                                         f"extra {sorted(keys[lang] - keys['en'])[:5]}"
    for key in keys["en"]:
        for lang in LANGS:
            assert catalog(lang)[key].strip(), f"{lang}: {key} is empty"
            assert _fields(catalog(lang)[key]) == _fields(catalog("en")[key]), f"{lang}: {key} placeholders"


def test_every_catalog_file_is_a_flat_object_of_strings():
    for path in FOLDER.glob("*/*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(data, dict) and all(isinstance(v, str) for v in data.values()), path


def test_aliases_and_unknown_languages():
    assert normalize("zh") == "zh-Hans" and normalize("zh-Hant") == "zh-Hant"
    assert t("i18n.language_name", "zh-Hant") == "繁體中文"
    with pytest.raises(TracerError, match="unknown language 'fr'"):
        normalize("fr")


def test_every_schema_record_is_explained_in_every_language():
    from tracer.schema import SCHEMA

    for lang in LANGS:
        missing = [e.pattern for e in SCHEMA if f"schema.{e.pattern}" not in catalog(lang)]
        assert not missing, f"{lang}: schema.json lacks {missing[:5]}"
