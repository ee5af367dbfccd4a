"""Qwen3's tokenizer: exact ids, special tokens, round trips, and the tokenizer.json path."""

import json

import pytest

from tracer import TracerError
from tracer.cli import main
from tracer.text.tokenizer import SPECIAL_TOKENS, HFTokenizer, QwenTokenizer, tokenizer_json

MIXED = [
    "Hello, world!",
    "明天交報告，请准时提交。简体和繁體混在一起",
    "emoji 😀👍🏽 🇹🇼 and ZWJ 👩‍💻",
    "def f(x):\n    return x ** 2  # code\n\n\tindented\r\n",
    "Numbers 1234567, 3.14159, -42, ١٢٣",
    "   leading spaces,    runs,\n\n\n   and trailing   ",
    "<|im_start|>user\nhi<|im_end|>\n<think>\n\n</think>\n\n<tool_call>{}</tool_call>",
    "NFD é vs NFC é, Ångström",
    "don't I'LL we've THEY'RE",
]


@pytest.fixture(scope="module")
def qwen():
    return QwenTokenizer()


def test_known_ids_of_the_official_tokenizer(qwen):
    """Ids as the official Qwen2/2.5/3 tokenizer gives them (typed in, not computed here)."""
    assert qwen.encode("Hello, world!") == [9707, 11, 1879, 0]
    assert qwen.encode("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n") == \
        [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198]
    assert qwen.encode("user") == [872] and qwen.encode("assistant") == [77091]


def test_special_tokens_are_the_26_of_qwen3_in_order(qwen):
    assert len(SPECIAL_TOKENS) == 26
    ids = [qwen.encode(t) for t in SPECIAL_TOKENS]
    assert ids == [[151643 + k] for k in range(26)]
    assert qwen.encode("<think>") == [151667] and qwen.encode("</think>") == [151668]
    assert qwen.encode("<tool_call>") == [151657] and qwen.encode("<|im_end|>") == [151645]
    assert qwen.vocab_size == 151669


@pytest.mark.parametrize("text", MIXED)
def test_round_trip_is_exact(qwen, text):
    import unicodedata

    assert qwen.decode(qwen.encode(text)) == unicodedata.normalize("NFC", text)


def test_nfc_normalisation(qwen):
    assert qwen.encode("e\u0301") == qwen.encode("é")


def test_per_token_view(qwen):
    ids = qwen.encode("Hi 😀")
    tokens = qwen.tokens(ids)
    assert b"".join(t.bytes for t in tokens) == "Hi 😀".encode()
    assert tokens[0].text == "Hi" and not tokens[0].special
    assert qwen.tokens([151645])[0].special and qwen.tokens([151645])[0].text == "<|im_end|>"


def test_tokenizer_json_built_from_the_ranks_agrees_with_tiktoken(qwen, tmp_path):
    """tokenizers (merges, Rust) and tiktoken (ranks) are independent BPE implementations."""
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(tokenizer_json(), ensure_ascii=False), encoding="utf-8")
    hf = HFTokenizer(path)
    for text in MIXED:
        assert hf.encode(text) == qwen.encode(text), text
        assert hf.decode(hf.encode(text)) == qwen.decode(qwen.encode(text))
    assert hf.stop_ids() == (151645, 151643)


def test_unknown_special_token_and_bad_ids(qwen):
    with pytest.raises(TracerError, match="unknown special token '<|im_middle|>'"):
        qwen.special_id("<|im_middle|>")
    with pytest.raises(TracerError, match="outside the Qwen3 vocabulary"):
        qwen.decode([151669])


def test_cli_tokenize_json(capsys):
    assert main(["tokenize", "Hello, world!", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"ids": [9707, 11, 1879, 0], "tokens": ["Hello", ",", " world", "!"]}


def test_cli_tokenize_table(capsys, tmp_path):
    """The table lists exactly the ids an independent BPE (``tokenizers`` on the same ranks) gives."""
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(tokenizer_json(), ensure_ascii=False), encoding="utf-8")
    expected = HFTokenizer(path).encode("明天 and 😀")
    assert main(["tokenize", "明天 and 😀"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{len(expected)} tokens"
    assert [int(line.split()[1]) for line in lines[1:]] == expected
    assert "e6 98 8e" in "\n".join(lines)  # the UTF-8 bytes of 明


def test_cli_unknown_special_token_in_suppress(capsys, tmp_path):
    code = main(["trace", "qwen3-0.6b", "--tokens", "1,2", "--set", "num_hidden_layers=1", "--suppress",
                 "<|nope|>", "--out", str(tmp_path / "x.npz")])
    assert code == 2
    assert "unknown special token '<|nope|>'" in capsys.readouterr().err
