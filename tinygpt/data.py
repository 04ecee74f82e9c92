"""Text in: reading files and uploads safely, cleaning and describing a user's text, the built-in training
corpora, and turning text into token tensors, train/validation splits and random training batches.

File and network access happen only when a function is called, never at import. Every rejection is a
ValueError (TextError) with one plain sentence, so the UI and the command line can show it as is.

Corpora for the from-scratch experiment:
- "tiny-shakespeare": downloaded once (Karpathy's char-rnn copy) into the user cache and reused; on a machine
  without internet this raises ConnectionError and the UI offers the offline corpus instead.
- "python-docs": built offline from the docstrings of Python's own standard library (English technical prose,
  ~300 k characters), so the experiment always works with nothing downloaded.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import os
import re
import unicodedata
import urllib.request
from pathlib import Path

import torch

from .tokenizer import CharTokenizer, gpt2_tokenizer

MAX_CHARS = 200_000  # upload cap: a CPU Space fine-tunes on essays, not books
MAX_UPLOAD_BYTES = 1_000_000  # a text upload is refused from its size, before it is read: 200,000 characters fit


class TextError(ValueError):
    """The text cannot be used; the message says why and what to do."""


# ---- files and uploads ----------------------------------------------------------------------------------
def read_text(path: str) -> str:
    """A UTF-8 text file (a training text on the command line)."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TextError(f"{os.path.basename(path)} is not UTF-8 text ({e.reason} at byte {e.start}).") from None


def read_upload(path, max_bytes: int = MAX_UPLOAD_BYTES, what: str = "a text upload") -> bytes:
    """The bytes of an uploaded file (a path, or an object with .name), refused from its size before it is read.
    Messages name the file's own name, never the server's path to it."""
    if path is None:
        return b""
    path = os.fspath(getattr(path, "name", path))
    size = upload_size(path)
    if size > max_bytes:
        raise TextError(f"{os.path.basename(path)} is {size:,} bytes; {what} may be at most {max_bytes:,} bytes.")
    with open(path, "rb") as f:
        return f.read(max_bytes + 1)


def upload_size(path: str) -> int:
    """The size of an uploaded file, or TextError naming it when there is no such file."""
    try:
        return os.path.getsize(path)
    except OSError:
        raise TextError(f"{os.path.basename(path) or 'The file'} could not be read: upload it again.") from None


def prepare_text(file=None, text=None, lossy: bool = False, drop_boilerplate: bool = True,
                 prefer_text: bool = False) -> tuple[str, list[str]]:
    """An upload or a pasted text, decoded and cleaned -> (cleaned text, cleaning steps). Raises TextError.

    prefer_text: use the text when it is not empty (e.g. the edited, cleaned text), else the upload."""
    if file is not None and not (prefer_text and isinstance(text, str) and text.strip()):
        source = decode_upload(read_upload(file), lossy)
    else:
        if not isinstance(text, str) or not text.strip():
            raise TextError("Upload a .txt file or paste some text first.")
        check_size(text)
        source = text
    cleaned, steps = clean_text(source, drop_boilerplate)
    if not cleaned.strip():
        raise TextError("There is no text left after cleaning.")
    check_size(cleaned)
    return cleaned, steps


def check_size(text: str) -> None:
    if len(text) > MAX_CHARS:
        raise TextError(f"The text has {len(text):,} characters; the limit is {MAX_CHARS:,}. Use a shorter excerpt.")


# ---- cleaning and describing a user's text ------------------------------------------------------------


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
    check_size(text)
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


# ---- built-in corpora -----------------------------------------------------------------------------------
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_CHARS = 1_115_394

# Stable, pure-Python standard-library modules with long docstrings.
DOC_MODULES = ["collections", "functools", "itertools", "re", "json", "argparse", "logging", "pathlib", "textwrap",
               "string", "random", "statistics", "fractions", "decimal", "datetime", "calendar", "heapq", "bisect",
               "csv", "difflib", "unittest", "typing", "dataclasses", "enum", "contextlib", "abc", "shutil",
               "tempfile", "glob", "fnmatch", "zipfile", "tarfile", "gzip", "hashlib", "hmac", "base64", "binascii",
               "struct", "codecs", "io", "os", "subprocess", "threading", "queue", "sched", "socket", "email",
               "http.client", "urllib.parse", "html", "xml.dom.minidom", "sqlite3", "pickle", "copy", "pprint",
               "inspect", "ast", "dis", "tokenize", "traceback", "warnings", "weakref", "operator", "numbers", "math",
               "cmath", "configparser", "getopt", "optparse", "locale", "gettext", "doctest", "timeit", "trace",
               "pdb", "profile", "pstats", "zipimport", "pkgutil", "importlib", "runpy", "platform", "signal", "mmap",
               "selectors", "asyncio", "concurrent.futures", "multiprocessing", "ftplib", "smtplib", "uuid",
               "ipaddress", "mimetypes", "mailbox", "wave", "colorsys", "secrets", "shlex", "cmd", "code", "codeop"]


def cache_dir() -> Path:
    base = os.environ.get("TINYGPT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tinygpt")
    return Path(base)


def tiny_shakespeare(timeout: float = 5.0) -> str:
    """The corpus from the local cache, downloading it the first time (ConnectionError when offline)."""
    path = cache_dir() / "tinyshakespeare.txt"
    if path.exists() and path.stat().st_size > 1_000_000:
        return path.read_text(encoding="utf-8")
    try:
        with urllib.request.urlopen(SHAKESPEARE_URL, timeout=timeout) as r:
            text = r.read().decode("utf-8")
    except Exception as e:
        raise ConnectionError(f"Tiny Shakespeare could not be downloaded ({type(e).__name__}).") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return text


@functools.lru_cache(maxsize=1)
def python_docs(max_chars: int = 300_000) -> str:
    """English prose from the standard library's docstrings: no download, same text for a given Python."""
    parts, seen, total = [], set(), 0
    for name in DOC_MODULES:
        try:
            mod = importlib.import_module(name)
        except Exception:
            continue
        # submodules are skipped: which of them a package exposes depends on what else was imported, and the
        # corpus must be the same in the app and in a fresh `python -m tinygpt` process
        objs = [mod] + [getattr(mod, a) for a in sorted(dir(mod))
                        if not a.startswith("_") and not inspect.ismodule(getattr(mod, a))]
        for obj in objs:
            try:
                doc = inspect.getdoc(obj)
            except Exception:
                doc = None
            if not doc or len(doc) < 200 or doc in seen:
                continue
            seen.add(doc)
            parts.append(doc.strip())
            total += len(doc) + 2
            if total >= max_chars:
                return "\n\n".join(parts)[:max_chars]
    return "\n\n".join(parts)[:max_chars]


CORPORA = {"Tiny Shakespeare (downloaded once)": "tiny-shakespeare", "Python docs (offline, built-in)": "python-docs"}


def load_corpus(name: str) -> str:
    if name == "tiny-shakespeare":
        return tiny_shakespeare()
    if name == "python-docs":
        return python_docs()
    raise ValueError(f"Unknown corpus {name!r}.")


# ---- tokens and batches ---------------------------------------------------------------------------------
def make_tokenizer(kind: str, text: str):
    """"char": one token per distinct character of `text`; "gpt2": GPT-2's BPE."""
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "gpt2":
        return gpt2_tokenizer()
    raise ValueError(f"Unknown tokenizer {kind!r}: use 'char' or 'gpt2'.")


def encode_text(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor(tokenizer.encode(text), dtype=torch.long)


def split_tokens(tokens: torch.Tensor, val_fraction: float = 0.1):
    """First (1 - val_fraction) for training, the rest held out (the end of the text, as nanoGPT)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"The held-out fraction must be between 0 and 1 (got {val_fraction}).")
    n = int(len(tokens) * (1 - val_fraction))
    return tokens[:n], tokens[n:]


def get_batch(data: torch.Tensor, batch_size: int, context: int, generator: torch.Generator):
    """Random windows: x (B, T) and the next-token targets y (B, T)."""
    hi = len(data) - context - 1
    ix = torch.randint(0, max(hi, 0) + 1, (batch_size,), generator=generator)
    x = torch.stack([data[i:i + context] for i in ix.tolist()])
    y = torch.stack([data[i + 1:i + 1 + context] for i in ix.tolist()])
    return x, y
