"""Tokens as text for people: byte-level pieces as their bytes, and the joined text of split characters.

Qwen3's tokenizer is byte-level BPE: a token may hold part of a UTF-8 character. Such a piece is shown as
its bytes (``<0xE9><0xB1>``), and the character it helps spell is given as the *joined* text of the tokens
that together make it (``鱻``).

>>> piece(b"\\xe6\\x98\\x8e"), piece(b"\\xe9\\xb1"), piece(b"a\\xe9")
('明', '<0xE9><0xB1>', 'a<0xE9>')
>>> joined([b"\\xe9\\xb1", b"\\xbb", b"!"])
['鱻', '鱻', '!']
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from tracer import TracerError


def piece(raw: bytes) -> str:
    """A token's bytes as text; bytes that are not a whole UTF-8 character are written ``<0xE6>``."""
    out = []
    while raw:
        try:
            out.append(raw.decode("utf-8"))
            break
        except UnicodeDecodeError as exc:
            out.append(raw[:exc.start].decode("utf-8"))
            out.append("".join(f"<0x{b:02X}>" for b in raw[exc.start:exc.end]))
            raw = raw[exc.end:]
    return "".join(out)


def joined(pieces: list[bytes]) -> list[str]:
    """For each token, the text of the run of tokens that spells whole characters together with it.

    A token that is whole characters by itself gets its own text; tokens that split a character share the
    text of the whole run (the run ends where the bytes so far decode completely).
    """
    out: list[str] = []
    run: list[bytes] = []
    for raw in pieces:
        run.append(raw)
        data = b"".join(run)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.reason == "unexpected end of data" and len(run) < 8:
                continue  # an unfinished character: the next token continues it
            text = piece(data)
        out += [text] * len(run)
        run = []
    if run:
        out += [piece(b"".join(run))] * len(run)
    return out


@lru_cache(maxsize=1)
def _qwen() -> Any:
    from tracer.text.tokenizer import QwenTokenizer

    return QwenTokenizer()


class TokenText:
    """Token ids of one trace's model as text: the toy vocabulary, or Qwen3's byte-level BPE."""

    def __init__(self, meta: dict[str, Any]):
        self.vocab: list[str] | None = meta.get("vocab")
        cfg = meta.get("config") or {}
        self.vocab_size = int(cfg.get("vocab_size") or 0)
        self._qwen = None
        if not self.vocab:
            from tracer.text.tokenizer import VOCAB_SIZE

            if self.vocab_size >= VOCAB_SIZE:
                try:
                    self._qwen = _qwen()
                except TracerError:
                    self._qwen = None
        self._meta = meta

    def raw(self, ids: list[int]) -> list[bytes | None]:
        """Each token's bytes (None for ids without any: padding rows of the table, or no tokenizer)."""
        if self.vocab:
            return [self.vocab[i].encode("utf-8") if 0 <= i < len(self.vocab) else None for i in ids]
        if self._qwen is None:
            return [None for _ in ids]
        known = self._qwen.vocab_size
        return [self._qwen.tokens([i])[0].bytes if 0 <= i < known else None for i in ids]

    def labels(self, ids: list[int]) -> list[str]:
        """Each token as text (``<0xE6>`` for partial characters, ``#151900`` for ids with no token)."""
        return [piece(raw) if raw is not None else f"#{i}" for i, raw in zip(ids, self.raw(ids))]

    def find(self, query: str) -> list[int]:
        """Token ids for a search: a whole number is an id; other text is tokenized (each of its tokens)."""
        text = query.strip()
        if not text:
            return []
        if text.lstrip("-").isdigit():
            return [int(text)]
        if self.vocab:
            return [i for i, v in enumerate(self.vocab) if v == text] or \
                [i for i, v in enumerate(self.vocab) if text in v]
        if self._qwen is not None:
            return list(self._qwen.encode(text))
        return []

    def prompt_labels(self) -> list[str]:
        """The prompt's tokens, from the exact bytes stored in the trace when present."""
        hexes = self._meta.get("token_bytes") or []
        ids = list(self._meta.get("token_ids") or [])
        if len(hexes) == len(ids) and all(hexes):
            return [piece(bytes.fromhex(h)) for h in hexes]
        return self.labels(ids) if (self.vocab or self._qwen) else list(self._meta.get("token_labels") or ids)

    def prompt_joined(self) -> list[str]:
        hexes = self._meta.get("token_bytes") or []
        if hexes and all(hexes):
            return joined([bytes.fromhex(h) for h in hexes])
        return self.prompt_labels()

    def generated_labels(self) -> list[str]:
        ids = list(self._meta.get("generated_ids") or [])
        if self.vocab or self._qwen:
            return self.labels(ids)
        return [str(x) for x in self._meta.get("generated_labels") or ids]

    def step_labels(self, step: int) -> tuple[list[str], list[str]]:
        """(query tokens, key tokens) of a forward step: the prompt at step 0; at decode step s the token
        chosen at step s−1 against the prompt and every token generated before it."""
        prompt = self.prompt_labels()
        if step == 0:
            return prompt, prompt
        generated = self.generated_labels()
        return generated[step - 1:step], prompt + generated[:step]
