"""Which files decide a recorded row's result, and their hashes: the tab's own sources (TAB_SOURCES) and every
tinygpt module they import, directly or through other tinygpt modules; never the other tabs, tabs.kit or the command
line (editing those does not change a recorded answer).

A recording keeps `fingerprint` (one hash of them all) and `fingerprint_files` ({file: its own hash});
tests/test_recordings.py fails, naming the files that changed, when they differ from the recorded ones.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import os
import types

from .recordings_view import ROOT  # the project root: files are named relative to it

TAB_SOURCES = {"train": "tabs/train", "finetune": "tabs/finetune.py", "dpo": "tabs/alignment",
               "rlhf": "tabs/alignment", "scaling": "tabs/scaling", "efficiency": "tabs/efficiency"}


def _py_files(rel: str) -> list[str]:
    p = os.path.join(ROOT, rel)
    if os.path.isfile(p):
        return [rel]
    out = []
    for d, dirs, files in os.walk(p):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        out += [os.path.relpath(os.path.join(d, f), ROOT) for f in sorted(files) if f.endswith(".py")]
    return out


def _module_file(name: str) -> str | None:
    base = os.path.join(ROOT, *name.split("."))
    for p in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(p):
            return os.path.relpath(p, ROOT)
    return None


def _imported_modules(rel: str) -> set:
    """Absolute module names a file imports (relative imports resolved; `from tinygpt import name` -> the module
    that defines the name; `tinygpt.name` attribute uses too)."""
    tree = ast.parse(open(os.path.join(ROOT, rel), encoding="utf-8").read())
    mod = rel[:-3].replace(os.sep, ".")
    package = mod[: -len(".__init__")] if mod.endswith(".__init__") else mod.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "tinygpt":
            names.add(f"tinygpt.{node.attr}")
    out = set()
    for n in names:
        if n.startswith("tinygpt.") and _module_file(n) is None:  # a name re-exported by a package (lazily)
            pkg, _, attr = n.rpartition(".")
            try:
                obj = getattr(importlib.import_module(pkg), attr)
            except (ImportError, AttributeError):
                continue
            n = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None) or pkg
        out.add(n)
    return out


def fingerprint_files(tab_id: str) -> list[str]:
    """The tab's own sources and every tinygpt module they import, directly or through other tinygpt modules (the
    command line, the other tabs and tabs.kit left out: editing those does not change a recorded answer)."""
    own = _py_files(TAB_SOURCES[tab_id])
    own_pkg = TAB_SOURCES[tab_id].removesuffix(".py").replace("/", ".")
    seen, todo = set(own), list(own)
    while todo:
        rel = todo.pop()
        for n in _imported_modules(rel):
            ok = (n.startswith("tinygpt") and not n.startswith("tinygpt.cli")) or n.startswith(own_pkg + ".")
            f = _module_file(n) if ok else None
            if f and f not in seen:
                seen.add(f)
                todo.append(f)
    return sorted(seen)


def file_hashes(files: list[str]) -> dict:
    """{file: short hash}: which of a row's files changed since it was recorded (the test's message names them)."""
    out = {}
    for rel in sorted(files):
        with open(os.path.join(ROOT, rel), "rb") as f:
            out[rel] = hashlib.sha256(f.read()).hexdigest()[:12]
    return out


def fingerprint(files: list[str]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode())
        with open(os.path.join(ROOT, rel), "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]
