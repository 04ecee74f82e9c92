"""Reading training text and turning it into token tensors (file I/O lives here, never at import)."""
from __future__ import annotations

import torch

from .tokenizer import CharTokenizer, gpt2_tokenizer


def read_text(path: str) -> str:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}).") from None


def make_tokenizer(kind: str, text: str):
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "gpt2":
        return gpt2_tokenizer()
    raise ValueError(f"Unknown tokenizer {kind!r}: use 'char' or 'gpt2'.")


def encode_text(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor(tokenizer.encode(text), dtype=torch.long)
