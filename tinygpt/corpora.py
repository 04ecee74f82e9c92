"""Training corpora for the from-scratch experiment.

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
import urllib.request
from pathlib import Path

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
        objs = [mod] + [getattr(mod, a) for a in sorted(dir(mod)) if not a.startswith("_")]
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
