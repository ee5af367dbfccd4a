"""Qwen3's tokenizer as GGUF metadata: written from the project's ranks, and rebuilt from a file's metadata.

llama.cpp stores a byte-level BPE as ``tokenizer.ggml.model = "gpt2"``, the token strings in GPT-2's
byte-to-unicode spelling (``tokenizer.ggml.tokens``), a type per token (``token_type``: 1 normal,
3 control, 4 user-defined, 5 unused) and the merges (``tokenizer.ggml.merges``, ``"left right"``).
``tokenizer.ggml.pre = "qwen2"`` names Qwen's split pattern.
"""

from __future__ import annotations

import json
from typing import Any

from tracer.sources import error
from tracer.text.tokenizer import (FIRST_SPECIAL_ID, HF_SPECIAL, SPECIAL_IDS, STOP_TOKENS, HFTokenizer,
                              bpe_tokenizer_json, bytes_to_unicode, gpt2_text, load_ranks, qwen_merges)

NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5
PRE_TOKENIZERS = ("qwen2",)


def qwen_gguf_vocab(vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and merges of Qwen3's vocabulary padded to ``vocab_size`` rows (``[PADn]``)."""
    to_char = bytes_to_unicode()
    ranks = load_ranks()
    tokens = [""] * FIRST_SPECIAL_ID
    for raw, rank in ranks.items():
        tokens[rank] = gpt2_text(raw, to_char)
    types = [NORMAL] * FIRST_SPECIAL_ID
    for token, _ in sorted(SPECIAL_IDS.items(), key=lambda item: item[1]):
        tokens.append(token)
        types.append(CONTROL if token in HF_SPECIAL or (token.startswith("<|") and token.endswith("|>"))
                     else USER_DEFINED)
    for i in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{i}]")
        types.append(UNUSED)
    merges = [f"{gpt2_text(a, to_char)} {gpt2_text(b, to_char)}" for a, b in qwen_merges()]
    return tokens, types, merges


class GGUFTokenizer(HFTokenizer):
    """The BPE a GGUF file describes, run by the ``tokenizers`` library (NFC, Qwen's split, byte level), like a
    checkpoint's ``tokenizer.json``; only how it is built and its stop tokens (the file's eos first) differ."""

    def __init__(self, tokens: list[str], types: list[int], merges: list[str], label: str,
                 eos: int | None = None):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise error("needs_tokenizers") from None
        added = [{"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": types[i] == CONTROL}
                 for i, tok in enumerate(tokens) if types[i] in (CONTROL, USER_DEFINED)]
        vocab = {tok: i for i, tok in enumerate(tokens)}  # added tokens too, so they keep their ids
        pairs = []
        for merge in merges:
            left, sep, right = merge.partition(" ")
            if not sep:
                raise error("gguf_bad_merge", path=label, merge=merge)
            pairs.append((left, right))
        try:
            self._tok = Tokenizer.from_str(json.dumps(bpe_tokenizer_json(vocab, pairs, added)))
        except Exception as exc:  # the library raises a bare Exception for inconsistent tables
            raise error("gguf_bad_tokenizer", path=label, detail=exc) from None
        self.label = label
        self.tokens = tokens
        stops = [i for t in STOP_TOKENS if (i := self._tok.token_to_id(t)) is not None]
        if eos is not None and 0 <= eos < len(tokens):
            stops.insert(0, eos)
        self._stops = tuple(dict.fromkeys(stops))

    @classmethod
    def from_file(cls, file: Any) -> GGUFTokenizer | None:
        """The tokenizer of a ``GGUFFile``, or None when it carries none."""
        model = file.value("tokenizer.ggml.model")
        if model is None:
            return None
        if model != "gpt2":
            raise error("gguf_tokenizer_model", path=file.label, model=model)
        pre = file.value("tokenizer.ggml.pre", "qwen2")
        if pre not in PRE_TOKENIZERS:
            raise error("gguf_pre_tokenizer", path=file.label, pre=pre, supported=", ".join(PRE_TOKENIZERS))
        tokens = file.value("tokenizer.ggml.tokens") or []
        types = file.value("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
        merges = file.value("tokenizer.ggml.merges") or []
        if len(types) != len(tokens):
            raise error("gguf_contradiction", path=file.label,
                        detail=f"{len(tokens)} tokens but {len(types)} token types")
        return cls(tokens, types, merges, file.label, file.value("tokenizer.ggml.eos_token_id"))

    def stop_ids(self) -> tuple[int, ...]:
        return self._stops

