"""Tokenizers: the toy word-level vocabulary of seed 004 (``<bos> 明天 交 報告 請 <eos>``)."""

from __future__ import annotations

from dataclasses import dataclass

from tracer import TracerError


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
                raise TracerError(f"{text[pos]!r} (position {pos}) is not in the toy vocabulary "
                                  f"{' '.join(self.vocab)}; write the prompt with these words or use --tokens")
            ids.append(match)
            pos += len(self.vocab[match])
        return ids

    def decode(self, ids: list[int]) -> str:
        return "".join(self.vocab[i] for i in ids)

    def token_strings(self, ids: list[int]) -> list[str]:
        return [self.vocab[i] for i in ids]
