"""What identifies a room's run and what it weighs: `run_key` (everything that decides a result: the action, its
settings, the model's weights, the uploaded text, the code version) and `result_bytes` (the tensors a finished
result keeps, for the room's byte budget). tabs/kit/runs.py schedules and shares the runs keyed here.
"""
from __future__ import annotations

import hashlib
import json
import os


_CODE_VERSION: str | None = None


def code_version() -> str:
    """A hash of the project's Python sources (tinygpt/ and tabs/): a changed implementation never reuses a
    result computed by the old one. Computed once per process."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        h = hashlib.sha256()
        for sub in ("tinygpt", "tabs"):
            for d, dirs, files in sorted(os.walk(os.path.join(root, sub))):
                dirs.sort()
                for f in sorted(files):
                    if f.endswith(".py"):
                        path = os.path.join(d, f)
                        h.update(os.path.relpath(path, root).encode())
                        with open(path, "rb") as fh:
                            h.update(fh.read())
        _CODE_VERSION = h.hexdigest()[:16]
    return _CODE_VERSION


def weights_fingerprint(model) -> str:
    """A short hash of a model's weights (cached on the model: shared models are read-only). None -> "none"."""
    if model is None:
        return "none"
    fp = getattr(model, "_tinygpt_fingerprint", None)
    if fp is None:
        h = hashlib.sha256()
        for k, v in sorted(model.state_dict().items()):
            h.update(k.encode())
            t = v.detach().cpu().contiguous().view(-1)
            # a strided sample of every tensor plus its shape and sum: cheap for GPT-2-XL, and any real change of
            # the weights (another checkpoint, a fine-tune) changes it
            h.update(str(tuple(v.shape)).encode())
            h.update(t[:: max(1, t.numel() // 4096)].float().numpy().tobytes())
            h.update(repr(float(t.float().sum())).encode())
        fp = h.hexdigest()[:16]
        try:
            model._tinygpt_fingerprint = fp
        except AttributeError:
            pass
    return fp


def run_key(action: str, settings: dict, model=None, text: str | bytes | None = None) -> str:
    """The key of a run: action, settings (JSON, sorted), the model's weights, the uploaded text and the code."""
    body = json.dumps(settings, sort_keys=True, default=str)
    text_hash = hashlib.sha256(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
                               ).hexdigest()[:16] if text is not None else "none"
    raw = "|".join([action, body, weights_fingerprint(model), text_hash, code_version()])
    return f"{action}:{hashlib.sha256(raw.encode()).hexdigest()[:24]}"


def result_bytes(obj, seen=None) -> int:
    """Bytes of the tensors a finished result holds (models' weights included), each tensor counted once."""
    import torch

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, torch.nn.Module):
        return sum(result_bytes(t, seen) for t in [*obj.parameters(), *obj.buffers()])
    if isinstance(obj, dict):
        return sum(result_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(result_bytes(v, seen) for v in obj)
    return 0
