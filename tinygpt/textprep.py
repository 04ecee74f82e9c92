"""Preparing a user's text for fine-tuning: decoding an upload safely, cleaning it, and describing it.

Every rejection is a ValueError with one plain sentence, so the UI and the command line can show it as is.
"""
from __future__ import annotations

import re
import unicodedata

MAX_CHARS = 200_000  # upload cap: a CPU Space fine-tunes on essays, not books


class TextError(ValueError):
    """The upload cannot be used; the message says why and what to do."""


def decode_upload(raw: bytes, lossy: bool = False) -> str:
    """bytes -> str. Rejects empty and binary files; non-UTF-8 needs lossy=True (bad bytes become U+FFFD)."""
    if raw is None or len(raw) == 0:
        raise TextError("The file is empty: upload a .txt file with some text in it.")
    sample = raw[:65536]
    if b"\x00" in sample:
        raise TextError("This looks like a binary file (it contains NUL bytes), not plain text: upload a .txt file.")
    ctrl = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    if ctrl > 0.05 * len(sample):
        raise TextError("This looks like a binary file (many control bytes), not plain text: upload a .txt file.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if not lossy:
            raise TextError(f"The file is not UTF-8 (byte {e.start} cannot be decoded). Save it as UTF-8, or tick "
                            f"'lossy decode' to replace undecodable bytes with �.") from None
        return raw.decode("utf-8", errors="replace")


URL_RE = re.compile(r"^\s*(https?://\S+|www\.\S+)\s*$", re.IGNORECASE)
HEADERISH_RE = re.compile(r"^\s*(page \d+( of \d+)?|\d+|copyright .*|all rights reserved.*|[-=_*#]{3,})\s*$",
                          re.IGNORECASE)


def clean_text(text: str, drop_boilerplate: bool = True) -> tuple[str, list[str]]:
    """Normalise a text for training. Returns (cleaned text, the steps applied with counts)."""
    steps = []
    t = unicodedata.normalize("NFC", text)
    if t != text:
        steps.append("Unicode normalised to NFC.")
    n = t.count("\r")
    t = t.replace("\r\n", "\n").replace("\r", "\n")
    if n:
        steps.append(f"Converted {n:,} Windows/Mac line endings to \\n.")
    before = len(t)
    t = "".join(ch for ch in t if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    if len(t) != before:
        steps.append(f"Removed {before - len(t):,} control/invisible characters.")
    if drop_boilerplate:
        lines = t.split("\n")
        kept = [ln for ln in lines if not (URL_RE.match(ln) or HEADERISH_RE.match(ln))]
        if len(kept) != len(lines):
            steps.append(f"Dropped {len(lines) - len(kept):,} lines that look like URLs, page numbers or headers.")
        t = "\n".join(kept)
    t2 = re.sub(r"[ \t\u00a0]+", " ", t)
    t2 = "\n".join(ln.strip() for ln in t2.split("\n"))
    if t2 != t:
        steps.append("Collapsed runs of spaces/tabs and trimmed line ends.")
    t3 = re.sub(r"\n{3,}", "\n\n", t2).strip()
    if t3 != t2:
        steps.append("Collapsed 3+ blank lines into one paragraph break and trimmed the ends.")
    if not steps:
        steps.append("Nothing needed cleaning.")
    return t3, steps


def check_length(text: str, min_tokens: int, n_tokens: int) -> None:
    if not text.strip():
        raise TextError("There is no text left after cleaning.")
    if len(text) > MAX_CHARS:
        raise TextError(f"The text has {len(text):,} characters; the limit is {MAX_CHARS:,}. Use a shorter excerpt.")
    if n_tokens < min_tokens:
        raise TextError(f"The text is too short: {n_tokens:,} tokens, but training needs at least {min_tokens:,} "
                        f"(the context length plus a held-out part). Add more text or lower the context.")


def describe(text: str, ids: list[int]) -> dict:
    """Characters, words, tokens, distinct tokens, type-token ratio, average sentence length (words)."""
    words = re.findall(r"[A-Za-z\u00c0-\u024f']+|\d+", text)
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    return {
        "characters": len(text),
        "words": len(words),
        "tokens": len(ids),
        "distinct_tokens": len(set(ids)),
        "type_token_ratio": len({w.lower() for w in words}) / max(1, len(words)),
        "avg_sentence_words": len(words) / max(1, len(sentences)),
        "chars_per_token": len(text) / max(1, len(ids)),
    }


def first_phrase(text: str, n_words: int = 8) -> str:
    """A prompt taken from the text: its first n words (the exercise's 'sample input phrase')."""
    words = text.split()
    return " ".join(words[:n_words])
