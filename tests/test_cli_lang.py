"""``--lang`` on every command: output, help texts and warnings from the catalogs of the chosen language, with
the English output, ``--json`` and file names unchanged."""

import argparse
import json
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest

from tracer.cli import build_parser, main
from tracer.i18n import LANG_CHOICES
from tracer.traces.tracefile import load_trace

FOLDER = Path(__file__).resolve().parents[1] / "tracer" / "i18n"
CHINESE = ("zh-Hans", "zh-Hant")


def raw(lang: str, key: str) -> str:
    """The catalog entry ``AREA.KEY`` of ``lang`` as its JSON file holds it (a template)."""
    area, _, name = key.partition(".")
    return json.loads((FOLDER / lang / f"{area}.json").read_text(encoding="utf-8"))[name]


def text(lang: str, key: str, **values) -> str:
    """The catalog entry ``AREA.KEY`` of ``lang``, filled in."""
    return raw(lang, key).format(**values)


def english_phrases(lang: str, keys: list[str]) -> list[str]:
    """Runs of two or more English words of these keys' English texts that the ``lang`` text does not keep
    (names such as ``max_new_tokens`` or ``LM head`` stay)."""
    phrases = []
    for key in keys:
        template, translated = raw(lang="en", key=key), raw(lang=lang, key=key)
        for literal, *_ in string.Formatter().parse(template):
            for part in re.split(r"[:;,()=+\[\]]", literal):
                part = part.strip()
                if len(re.findall(r"[A-Za-z]{2,}", part)) >= 2 and part not in translated:
                    phrases.append(part)
    return phrases


def flat(s: str) -> str:
    """Without white space: a help text wrapped over several lines still matches."""
    return "".join(s.split())


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# ---- every subcommand takes --lang ----

MINIMAL = {"trace": ["m", "--out", "x.npz"], "show": ["x.npz"], "demo": [], "tokenize": ["hi"],
           "chat": ["--messages", "m.json"], "export": ["m", "--out", "d"], "quantize": ["m", "--type", "Q8_0", "--out",
           "q.gguf"], "compare": ["a.npz", "b.npz"], "app": [], "notebooks": [], "info": ["m"],
           "train-step": ["m", "--out", "t.npz"]}


def test_every_subcommand_accepts_lang_with_the_same_choices():
    parser = build_parser()
    commands = subcommands(parser)
    assert set(commands) == set(MINIMAL), "a new subcommand: add its minimal arguments to MINIMAL"
    for name, sub in commands.items():
        option = sub._option_string_actions.get("--lang")
        assert option is not None and tuple(option.choices) == LANG_CHOICES, name
        for lang in LANG_CHOICES:
            assert parser.parse_args([name, *MINIMAL[name], "--lang", lang]).lang == lang, name
        assert parser.parse_args([name, *MINIMAL[name]]).lang == "en", name  # the default, as before
        assert parser.parse_args(["--lang", "zh-Hant", name, *MINIMAL[name]]).lang == "zh-Hant", name


def test_help_texts_come_from_the_catalog_of_lang(capsys):
    english = build_parser("en")
    for lang in CHINESE:
        values = {"port": 8501, "coef": 0.001, "default": "x"}
        keys = [f"cli.{k}" for k in json.loads((FOLDER / "en" / "cli.json").read_text()) if k.startswith("help_")]
        hidden = [flat(text("en", k, **values)) for k in keys if raw("en", k) != raw(lang, k)]
        for name in subcommands(english):
            with pytest.raises(SystemExit) as stop:
                main([name, "--help", "--lang", lang])
            assert stop.value.code == 0
            out = flat(capsys.readouterr().out)
            assert out.startswith(flat(text(lang, "cli.usage"))), name
            for key in ("cli.help_help", "cli.help_lang", "cli.options"):
                assert flat(text(lang, key)) in out, (name, key)
            leaked = [h for h in hidden if h in out]
            assert not leaked, f"{name} --help --lang {lang}: English help {leaked[:3]}"
        with pytest.raises(SystemExit):
            main(["--help", f"--lang={lang}"])
        out = flat(capsys.readouterr().out)
        assert flat(text(lang, "cli.cmd_compare")) in out and flat(text(lang, "cli.description")) in out
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: tracer compare") and flat(text("en", "cli.help_all")) in flat(out)


def test_console_script_prints_help_in_traditional_chinese():
    proc = subprocess.run([sys.executable, "-m", "tracer.cli", "info", "--lang", "zh-Hant", "--help"],
                          capture_output=True, text=True, encoding="utf-8")
    assert proc.returncode == 0, proc.stderr
    assert flat(text("zh-Hant", "cli.help_context")) in flat(proc.stdout)
    assert flat(text("en", "cli.help_context")) not in flat(proc.stdout)


# ---- output in the chosen language ----

@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    """A toy trace, the same with fewer records, and one rounded to 3 decimals (records that differ)."""
    d = tmp_path_factory.mktemp("traces")
    assert main(["trace", "toy-dense", "--tokens", "0,1,2,3", "--out", str(d / "a.npz")]) == 0
    assert main(["trace", "toy-dense", "--tokens", "0,1,2,3", "--capture", "layers.0.attn.*", "--out",
                 str(d / "part.npz")]) == 0
    assert main(["trace", "toy-dense", "--tokens", "0,1,2,3", "--round", "3", "--out", str(d / "r.npz")]) == 0
    return d


@pytest.mark.parametrize("lang", CHINESE)
def test_trace_tokenize_chat_and_show_follow_lang(tmp_path, capsys, lang):
    code, out, _ = run(capsys, "trace", "toy-moe", "--prompt", "明天交報告", "--max-new-tokens", "2",
                       "--out", str(tmp_path / "m.npz"), "--lang", lang)
    assert code == 0
    reason = text(lang, "cli.stop_max_new_tokens")
    assert text(lang, "cli.summary_tokens", model="toy-moe", count=4, prompt="<bos> 明天 交 報告",
                new='4 "請", 4 "請"') in out
    assert text(lang, "cli.summary_steps", sampled=2, steps=1, reason=reason,
                records=len(load_names(tmp_path / "m.npz")), path=tmp_path / "m.npz") in out
    code, out, _ = run(capsys, "show", str(tmp_path / "m.npz"), "layers.0.attn.probs", "--npy",
                       str(tmp_path / "p.npy"), "--lang", lang)
    assert code == 0 and out.strip() == text(lang, "interp.npy_wrote", name="layers.0.attn.probs",
                                             shape=[1, 4, 4], dtype="float32", file=tmp_path / "p.npy")
    code, out, _ = run(capsys, "tokenize", "Hello 世界", "--lang", lang)
    assert code == 0 and out.splitlines()[0] == text(lang, "cli.token_count", count=3)
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "user", "content": "hi /no_think"}]), encoding="utf-8")
    code, out, err = run(capsys, "chat", "--messages", str(messages), "--lang", lang)
    assert code == 0 and "<|im_start|>user" in out
    assert err == text(lang, "cli.thinking", mode=text(lang, "cli.thinking_off_soft")) + "\n"
    english = english_phrases(lang, ["cli.summary_tokens", "cli.summary_steps", "cli.token_count",
                                     "cli.thinking_off_soft", "interp.npy_wrote"])
    assert english and not [p for p in english if p in out + err]


def load_names(path: Path) -> list[str]:
    return load_trace(path).names


@pytest.mark.parametrize("lang", CHINESE)
def test_info_labels_notes_and_estimate_follow_lang(capsys, lang):
    code, out, _ = run(capsys, "info", "toy-moe", "--tokens", "8", "--lang", lang)
    assert code == 0
    assert out.startswith(text(lang, "sources.card_head", name="toy-moe", model_type="qwen3_moe", layers=1,
                                    hidden=4, heads=1, kv_heads=1, head_dim=2, vocab=6))
    labels = ["sources.card_parameters", "sources.card_embedding", "sources.card_final_norm", "sources.card_total",
              "sources.card_active", "sources.card_experts", "safety.estimate_weights", "safety.estimate_fits"]
    for key in labels:
        assert text(lang, key) in out, key
    assert text(lang, "sources.card_active_experts", k=2, n=3) in out
    assert text(lang, "cli.info_note", text=text(lang, "notes.toy_moe_suppress")) in out
    assert text(lang, "cli.info_erratum", text=text(lang, "notes.erratum_seed004_rounding")) in out
    code, vl, _ = run(capsys, "info", "qwen3-vl-tiny", "--lang", lang)
    assert code == 0
    assert text(lang, "sources.info_source", source=text(lang, "sources.source_random", seed=0)) in vl
    assert text(lang, "cli.info_note", text=text(lang, "notes.vl_tiny_positions")) in vl
    assert text(lang, "vision.card_total", total=10_354_432) in vl
    keys = [f"sources.{k}" for k in ("card_head", "card_parameters", "card_layer_parts", "card_final_norm",
                                     "card_tied", "card_active", "card_active_experts", "card_experts",
                                     "source_random")] + ["vision.card_tower", "vision.card_params",
                                                          "safety.estimate_header", "cli.info_erratum"]
    english = english_phrases(lang, keys)
    assert english and not [p for p in english if p in out + vl]


@pytest.mark.parametrize("lang", CHINESE)
def test_compare_table_follows_lang_and_json_does_not(traces, capsys, lang):
    a, part, rounded = (str(traces / n) for n in ("a.npz", "part.npz", "r.npz"))
    code, out, _ = run(capsys, "compare", a, part, "--lang", lang)
    assert code == 0  # records missing from one trace are listed, not a failure
    lines = out.splitlines()
    assert lines[2] == text(lang, "compare.tolerance", rtol=1e-4, atol=1e-5)
    missing = [line for line in lines if line.startswith(text(lang, "compare.verdict_MISSING"))]
    label = load_trace(a).label
    assert missing and all(line.endswith(text(lang, "compare.note_only_in", label=label)) for line in missing)
    assert lines[-1] == text(lang, "compare.agree")
    code, out, _ = run(capsys, "compare", a, rounded, "--lang", lang)
    assert code == 1
    first = out.splitlines()[-1]
    assert first.startswith(text(lang, "compare.first_divergence", name=""))
    assert any(line.startswith(text(lang, "compare.verdict_DIFF")) for line in out.splitlines())
    counts = out.splitlines()[-2]
    assert text(lang, "compare.count", count=0, verdict=text(lang, "compare.verdict_SHAPE")) in counts
    english = english_phrases(lang, ["compare.tolerance", "compare.first_divergence", "compare.agree",
                                     "compare.note_only_in", "compare.errors"])
    assert english and not [p for p in english if p in out]
    assert run(capsys, "compare", a, part, "--json", "--lang", lang)[1] == run(capsys, "compare", a, part,
                                                                                "--json")[1]


def test_compare_keeps_its_english_table(traces, capsys):
    a, part = str(traces / "a.npz"), str(traces / "part.npz")
    code, out, _ = run(capsys, "compare", a, part)
    lines = out.splitlines()
    assert code == 0 and lines[2].startswith("tolerance: relative 0.0001 of the record's largest value")
    assert any(line.startswith("MISSING ") and line.endswith(f"only in {load_trace(a).label}") for line in lines)
    assert lines[-1] == "the traces agree on every common record"


@pytest.mark.parametrize("lang", CHINESE)
def test_export_and_quantize_say_what_they_wrote_in_lang(tmp_path, capsys, lang):
    small = ["--set", "num_hidden_layers=1", "--set", "hidden_size=64", "--set", "head_dim=16",
             "--set", "intermediate_size=40", "--set", "vocab_size=256"]
    source = text(lang, "sources.source_random", seed=0)
    code, out, _ = run(capsys, "export", "qwen3-0.6b", *small, "--out", str(tmp_path / "ck"), "--lang", lang)
    assert code == 0 and out.strip() == text(lang, "cli.wrote_checkpoint", model="qwen3-0.6b", source=source,
                                             dtype="float32", path=tmp_path / "ck", count=1)
    code, out, err = run(capsys, "quantize", "qwen3-0.6b", *small, "--type", "Q4_K", "--out",
                         str(tmp_path / "q.gguf"), "--lang", lang)
    assert code == 0
    assert err.startswith(text(lang, "sources.quant_kept_f32", count=7, type="Q4_K", block=256, tensors="")[:-1])
    assert out.startswith(text(lang, "sources.wrote_gguf", model="qwen3-0.6b", source=source,
                               path=tmp_path / "q.gguf", size=0, types="").split("0.0")[0])
    code, out, _ = run(capsys, "info", str(tmp_path / "ck"), "--lang", lang)
    assert text(lang, "sources.info_source", source=text(lang, "sources.source_checkpoint",
                                                         path=tmp_path / "ck")) in out
    english = english_phrases(lang, ["cli.wrote_checkpoint", "sources.wrote_gguf", "sources.source_random",
                                     "sources.quant_kept_f32"])
    assert english and not [p for p in english if p in out + err]


@pytest.mark.parametrize("lang", CHINESE)
def test_a_checkpoint_warning_is_in_lang(tmp_path, capsys, lang):
    """A folder with both an index and model.safetensors: the warning (trace) and the note (info) in ``lang``."""
    from safetensors import safe_open

    small = ["--set", "num_hidden_layers=1", "--set", "hidden_size=32", "--set", "head_dim=8",
             "--set", "intermediate_size=16", "--set", "vocab_size=64"]
    ck = tmp_path / "ck"
    assert main(["export", "qwen3-0.6b", *small, "--out", str(ck)]) == 0
    with safe_open(str(ck / "model.safetensors"), framework="numpy") as f:
        weight_map = {k: "model.safetensors" for k in f.keys()}
    (ck / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    capsys.readouterr()
    warning = text(lang, "safety.index_wins", directory=ck, ignored="model.safetensors")
    code, _, err = run(capsys, "trace", str(ck), "--tokens", "1,2", "--out", str(tmp_path / "t.npz"), "--lang", lang)
    assert code == 0 and err == f"tracer: warning: {warning}\n"
    code, out, _ = run(capsys, "info", str(ck), "--lang", lang)
    assert code == 0 and text(lang, "cli.info_note", text=warning) in out
    code, _, err = run(capsys, "trace", str(ck), "--tokens", "1,2", "--out", str(tmp_path / "t.npz"))
    assert err == f"tracer: warning: {text('en', 'safety.index_wins', directory=ck, ignored='model.safetensors')}\n"
    assert load_trace(tmp_path / "t.npz").meta["notes"] == [text("en", "safety.index_wins", directory=ck,
                                                                 ignored="model.safetensors")]


def test_demo_in_traditional_chinese(tmp_path, capsys):
    code, out, _ = run(capsys, "demo", "--out-dir", str(tmp_path), "--lang", "zh-Hant")
    assert code == 0
    reason = text("zh-Hant", "cli.stop_max_new_tokens")
    for model in ("toy-dense", "toy-moe"):
        assert text("zh-Hant", "cli.summary_tokens", model=model, count=4, prompt="<bos> 明天 交 報告",
                    new='4 "請"') in out
        assert text("zh-Hant", "cli.summary_steps", sampled=1, steps=0, reason=reason,
                    records=len(load_names(tmp_path / f"{model}.npz")), path=tmp_path / f"{model}.npz") in out
    assert not [p for p in english_phrases("zh-Hant", ["cli.summary_tokens", "cli.summary_steps"]) if p in out]


# ---- notebooks: an input error shown in the notebooks' language ----

def test_notebook_cells_show_tracer_errors_in_the_notebooks_language(monkeypatch, capsys):
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    from tracer.teaching.classroom import show_errors

    shell = InteractiveShell.instance()
    try:
        assert show_errors()
        monkeypatch.setenv("QWEN3_TRACER_LANG", "zh-Hant")
        result = shell.run_cell("from tracer import TracerError\nraise TracerError.of('errors.no_input')")
        out = capsys.readouterr().out
        assert not result.success and f"TracerError: {text('zh-Hant', 'errors.no_input')}" in out
        assert "Traceback" not in out
        monkeypatch.setenv("QWEN3_TRACER_LANG", "zh")
        shell.run_cell("raise TracerError.of('errors.no_input')")
        assert f"TracerError: {text('zh-Hans', 'errors.no_input')}" in capsys.readouterr().out
        shell.run_cell("1 / 0")  # other exceptions keep IPython's traceback
        assert "ZeroDivisionError" in capsys.readouterr().out
    finally:
        shell.set_custom_exc((), None)
        InteractiveShell.clear_instance()
