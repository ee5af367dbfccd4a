"""The language catalogs: every language has every key, with the same placeholders."""

import json
import re
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


# Taiwan's computing words that the zh-Hans catalogs write the mainland's way (scripts/zh_hans.py's table), the
# mainland's that zh-Hant writes Taiwan's way, and characters that only Simplified Chinese writes
TAIWAN_WORDS = ("位元", "字元", "磁碟", "记忆体", "程式", "档案", "软体", "资料", "快取", "视窗", "载入")
MAINLAND_WORDS = ("字節", "數組", "網絡", "鏈接", "窗口", "內存")
SIMPLIFIED_ONLY = "这们说为会时来对过还发经问间学实现开关数长机与个从让应该层头输词图录线选项识块态"


def test_each_chinese_catalog_keeps_to_its_own_script_and_words():
    """zh-Hans has no Taiwan term (8 位, not 8 位元) and zh-Hant no Simplified character nor mainland term; the
    notebooks' texts quote with “” in zh-Hans and 「」 in zh-Hant."""
    for key, text in catalog("zh-Hans").items():
        assert not [w for w in TAIWAN_WORDS if w in text], (key, text)
    for key, text in catalog("zh-Hant").items():
        assert not [w for w in MAINLAND_WORDS if w in text] and not set(SIMPLIFIED_ONLY) & set(text), (key, text)
    notebooks = {lang: "".join(v for k, v in catalog(lang).items() if k.startswith("notebooks.")) for lang in LANGS}
    assert "“" in notebooks["zh-Hans"] and not set("「」『』") & set(notebooks["zh-Hans"])
    assert "「" in notebooks["zh-Hant"] and not set("“”‘’") & set(notebooks["zh-Hant"])


def test_every_schema_record_is_explained_in_every_language():
    from tracer.traces.schema import SCHEMA

    for lang in LANGS:
        missing = [e.pattern for e in SCHEMA if f"schema.{e.pattern}" not in catalog(lang)]
        assert not missing, f"{lang}: schema.json lacks {missing[:5]}"


# ---- errors: one catalog key per message, rendered in the user's language ----

ROOT = FOLDER.parents[1]
RAISE_ALLOWED = {
    # (file, the call's source): why it keeps a fixed text
    ("apps/guard.py", "TracerError(scrub(str(exc)))"):
        "an error without a catalog key (a third-party message) re-raised without server folders, as it is",
}


def _catalog_file(lang: str, area: str) -> dict[str, str]:
    return json.loads((FOLDER / lang / f"{area}.json").read_text(encoding="utf-8"))


def _calls(node_type_check):
    import ast

    for folder in ("tracer", "apps"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Call) and node_type_check(node):
                    yield path.relative_to(ROOT).as_posix(), node, ast.get_source_segment(source, node)


def test_every_tracer_error_is_raised_with_a_catalog_key():
    """A new ``raise TracerError("english text")`` fails here: raise ``TracerError.of("errors.key", ...)``."""
    import ast

    direct = [(f, " ".join(src.split()), node.lineno)
              for f, node, src in _calls(lambda n: isinstance(n.func, ast.Name) and n.func.id == "TracerError")]
    fixed = [f"{f}:{line}: {src}" for f, src, line in direct if (f, src) not in RAISE_ALLOWED]
    assert not fixed, "English-only errors (use TracerError.of with a catalog key):\n" + "\n".join(fixed)
    assert {(f, src) for f, src, _ in direct} == set(RAISE_ALLOWED), "an allow-listed raise is gone: drop it"


def test_every_catalog_key_raised_exists_with_the_values_it_needs():
    import ast

    def keyed(n: ast.Call) -> bool:
        is_of = (isinstance(n.func, ast.Attribute) and n.func.attr == "of" and isinstance(n.func.value, ast.Name)
                 and n.func.value.id == "TracerError")
        return is_of or (isinstance(n.func, ast.Name) and n.func.id == "Message")

    checked = 0
    for f, node, src in _calls(keyed):
        if not node.args or not isinstance(node.args[0], ast.Constant):
            continue  # a key built at run time (sources' error helper, vision placement): their tests cover them
        key = node.args[0].value
        assert key in catalog("en"), f"{f}:{node.lineno}: {key} is in no catalog"
        if any(k.arg is None for k in node.keywords):
            continue
        given = {k.arg for k in node.keywords}
        assert given == _fields(catalog("en")[key]), f"{f}:{node.lineno}: {key} takes {_fields(catalog('en')[key])}"
        checked += 1
    assert checked > 300


def test_an_error_keeps_its_key_and_renders_in_every_language():
    import pickle

    from tracer import Message

    exc = TracerError.of("safety.cannot_read", what=Message("errors.what_file", what="messages"), path="m.json",
                         reason=Message("errors.not_regular_json"))
    assert str(exc) == "cannot read messages file m.json: not a regular file (a FIFO or a device); give a JSON file"
    hans, hant = _catalog_file("zh-Hans", "safety"), _catalog_file("zh-Hant", "errors")
    assert exc.text("zh") == hans["cannot_read"].format(
        what=_catalog_file("zh-Hans", "errors")["what_file"].format(what="messages"), path="m.json",
        reason=_catalog_file("zh-Hans", "errors")["not_regular_json"])
    assert hant["not_regular_json"] in exc.text("zh-Hant") and exc.key == "safety.cannot_read"
    again = pickle.loads(pickle.dumps(exc))
    assert again.text("zh-Hant") == exc.text("zh-Hant") and str(again) == str(exc)
    wrapped = TracerError.of("errors.trace_config", label="t.npz", detail=TracerError.of("errors.no_input"))
    assert wrapped.text("zh") == "t.npz:配置:" + _catalog_file("zh-Hans", "errors")["no_input"]
    assert TracerError("third-party text").text("zh-Hant") == "third-party text"


def test_cli_errors_are_printed_in_the_language_of_lang(tmp_path, capsys):
    from tracer.cli import main

    hans = _catalog_file("zh-Hans", "errors")
    code = main(["trace", "toy-dense", "--lang", "zh-Hans", "--out", str(tmp_path / "t.npz")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"tracer: error: {hans['no_input']}\n"
    code = main(["trace", "toy-dense", "--out", str(tmp_path / "t.npz")])  # no --lang: English
    english = "give the input with --prompt TEXT or --tokens 0,1,2,3"
    assert code == 2 and capsys.readouterr().err == f"tracer: error: {english}\n"
    # an error while the arguments are parsed: the --lang typed on the command line
    code = main(["show", str(tmp_path / "t.npz"), "--lang=zh-Hant", "--decimals", "99"])
    want = _catalog_file("zh-Hant", "safety")["out_of_range"].format(flag="--decimals", low=0, high=12, value=99)
    assert code == 2 and capsys.readouterr().err == f"tracer: error: {want}\n"
    code = main(["show", str(tmp_path / "missing.npz"), "--lang", "zh"])
    want = hans["trace_missing"].format(label=tmp_path / "missing.npz")
    assert code == 2 and capsys.readouterr().err == f"tracer: error: {want}\n"


def test_every_formula_with_words_is_translated_and_shown_in_the_readers_language():
    from tracer.traces.schema import OPS
    from tracer.traces.show import formula_text

    english = _catalog_file("en", "formulas")
    assert all(english[op] == OPS[op].text for op in english), "formulas.json (en) must be the schema's text"
    words = re.compile(r"\b(if|else|otherwise|elsewhere|of|the|for|over|after|with|that|from|in|on|or|and|per)\b")
    untranslated = [op for op, o in OPS.items() if words.search(o.text) and op not in english]
    assert not untranslated, f"formulas.json lacks the op texts {untranslated}"
    info = {"op": "softmax", "formula_text": OPS["softmax"].text}
    assert formula_text(info, "zh-Hant") == _catalog_file("zh-Hant", "formulas")["softmax"]
    assert formula_text(info, "en") == OPS["softmax"].text
    assert formula_text({**info, "formula_text": "an older text"}, "zh") == "an older text"  # never replaced


def test_show_prints_the_formula_in_chinese_and_keeps_the_file_english(tmp_path, capsys):
    from tracer.cli import main
    from tracer.traces.tracefile import load_trace

    out = tmp_path / "t.npz"
    assert main(["trace", "toy-dense", "--tokens", "0,1,2,3", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["show", str(out), "layers.0.attn.probs", "--lang", "zh"]) == 0
    shown = capsys.readouterr().out
    assert _catalog_file("zh-Hans", "formulas")["softmax"] in shown and "row softmax" not in shown
    info = load_trace(out).info["layers.0.attn.probs"]
    assert info["formula_text"].endswith("(row softmax)")


def test_the_explorer_shows_an_error_in_the_pages_language(monkeypatch, tmp_path):
    pytest.importorskip("streamlit")
    from tests.apptest import open_explorer

    monkeypatch.setenv("QWEN3_TRACER_TRACES_DIR", str(tmp_path))
    at = open_explorer(monkeypatch, lang="zh-Hant")
    next(x for x in at.text_input if x.key == "open_path").set_value("missing.npz")
    at.button(key="open_button").click().run()
    want = _catalog_file("zh-Hant", "errors")["trace_missing"].format(label="missing.npz")
    assert [e.value for e in at.error] == [want]  # in the page's language, without the server's folder
    assert not at.exception


# ---- LaTeX formulas: the words inside \text{…} in the reader's language ----

TEXT_GROUP = re.compile(r"\\text\{([^{}]*)\}")
CJK = re.compile(r"[\u3400-\u9fff]")


def test_every_word_of_a_latex_formula_is_a_name_or_translated_in_every_language():
    """A new English word in a formula's ``\\text{…}`` fails here until ``latex.json`` translates it (or it is a
    name of the short ``LATEX_NAMES`` list)."""
    from tracer.traces.schema import LATEX_NAMES, OPS, latex_key

    english = _catalog_file("en", "latex")
    used_names, used_keys, missing = set(), set(), []
    for op, o in OPS.items():
        groups = TEXT_GROUP.findall(o.latex)
        assert len(groups) == o.latex.count(r"\text{"), f"{op}: a \\text{{…}} group with braces inside"
        for group in groups:
            core = group.strip()
            if not re.search(r"[A-Za-z]", core):
                continue  # punctuation such as top\text{-}k
            if core in LATEX_NAMES:
                used_names.add(core)
                continue
            key = latex_key(group)
            area, _, name = key.partition(".")
            if area != "latex" or english.get(name) != core:
                missing.append((op, core))
            used_keys.add(name)
    assert not missing, f"latex.json (en) lacks these formula words, each its own text: {missing}"
    assert used_names == set(LATEX_NAMES) and len(LATEX_NAMES) <= 16, "LATEX_NAMES: a short list, every name used"
    assert set(english) == used_keys, f"latex.json has words no formula uses: {sorted(set(english) - used_keys)}"
    for lang in ("zh-Hans", "zh-Hant"):
        for name in english:
            word = t(f"latex.{name}", lang)
            assert CJK.search(word), f"{lang}: latex.{name} = {word!r} is not translated"
            assert not re.search(r"[\\{}$%#&_^~]", word), f"{lang}: latex.{name} has a LaTeX special character"


def test_a_formula_in_chinese_has_the_catalogs_words_and_the_same_mathematics():
    from tracer.traces.schema import OPS, latex

    otherwise = [op for op, o in OPS.items() if r"\text{otherwise}" in o.latex]
    assert {"causal_mask", "sliding_window_mask"} <= set(otherwise)
    for lang in ("zh-Hans", "zh-Hant"):
        word = _catalog_file(lang, "latex")["otherwise"]
        for op in otherwise:
            shown = latex(op, lang)
            assert rf"\text{{{word}}}" in shown and "otherwise" not in shown, (lang, op, shown)
        for op, o in OPS.items():
            shown = latex(op, lang)
            assert TEXT_GROUP.sub("", shown) == TEXT_GROUP.sub("", o.latex), f"{op}: only the words may change"
            assert latex(op, "en") == o.latex
    hans = _catalog_file("zh-Hans", "latex")
    assert latex("kv_append", "zh") == rf"K_{{\text{{{hans['cache']}}}}} = [K_{{\text{{{hans['past']}}}}};\ " \
                                       rf"K_{{\text{{{hans['new']}}}}}]"
    # spaces around the words stay; names stay
    assert rf"\text{{ {hans['in']} }}" in latex("patchify", "zh") and r"\text{patch }" in latex("patchify", "zh")
    assert latex("top_k", "zh-Hant") == OPS["top_k"].latex
