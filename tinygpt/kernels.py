"""Kernels: fast fp32 inference on x86 CPUs, every nn.Linear through oneDNN, which streams weights near memory speed.

Part of the core (loading.py switches it on for every fp32 model it loads), so it lives here rather than in
efficiency/, which only re-exports it: the core never imports the subpackages.

Why: decoding feeds a few rows (batch x 1 new token) through every weight matrix, so a step costs the time to
*read* ~0.5 GB of fp32 weights (GPT-2 124M). F.linear goes to MKL's sgemm, which on an AMD EPYC reads them at
only 5-13 GB/s when M = 1..8 rows; oneDNN's matmul (`torch.ops.mkldnn._linear_pointwise`) reads the same dense
weight at 20-29 GB/s, close to what a plain `tensor.sum()` reaches (~31 GB/s). Same maths, diff ~1e-6.

How: `enable_fast_inference(model)` checks the op once against F.linear, then switches the class of each
nn.Linear *in place* to `FastLinear` (a subclass with the same parameters, names, hooks and tied weights).
Switching the class keeps the very same module objects, so state_dict, load_state_dict, deepcopy, pickling and
`lm_head.weight is wte.weight` behave exactly as before; a forward-method swap (types.MethodType) would put a
bound method in each module's __dict__ and break pickling. FastLinear uses oneDNN only for inference:
grad disabled (no_grad / inference_mode), fp32, CPU. Training and bf16 take the standard F.linear path.

Two variants:
  dense  (default) oneDNN on the weight as it is: no extra memory, no cache that could go stale.
  packed oneDNN on a copy of the weight reordered into its blocked layout (`_reorder_linear_weight`):
         another ~20% faster at M = 3..64 but the copies double weight memory. They live in a plain
         attribute, never in state_dict, and are rebuilt when the weight's data_ptr or _version changes.
         (In-place edits through `weight.data` do not bump `_version`; call `refresh_fast_inference`.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TOLERANCE = 1e-4  # max |fast - F.linear| allowed, relative to max(1, max |F.linear|)
PACK_MAX_ROWS = 64  # decode-sized calls use the packed weight; prefill is compute-bound, dense is as fast
CHECK_ROWS = (1, 3, 64)  # decode (1 and 3 rows) and a prefill-sized call


def fast_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                packed: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., in) -> (..., out), the same as F.linear(x, weight, bias), computed by oneDNN.

    packed: optional `pack_weight(weight)`; when given it is used instead of the dense weight.
    """
    return torch.ops.mkldnn._linear_pointwise(x, weight if packed is None else packed, bias, "none", [], "")


def pack_weight(weight: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """weight (out, in) fp32 -> an opaque oneDNN tensor for fast_linear (a copy; `rows` = expected M, a hint)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows)


def _version_key(weight: torch.Tensor):
    """(data_ptr, _version) identifies the weight's current values; None if they cannot be tracked."""
    try:
        return weight.data_ptr(), weight._version
    except RuntimeError:  # inference tensors have no version counter: never cache a packed copy of them
        return None


class FastLinear(nn.Linear):
    """nn.Linear whose forward uses oneDNN when grad is disabled and everything is fp32 on CPU.

    Never built directly: `enable_fast_inference` switches existing nn.Linear modules to this class.
    Extra state (plain attributes, not in state_dict): `fast_packed` (bool) and `_fast_cache` (key, packed).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight, self.bias
        if (torch.is_grad_enabled() or x.dtype != torch.float32 or w.dtype != torch.float32
                or x.device.type != "cpu" or (b is not None and b.dtype != torch.float32)):
            return F.linear(x, w, b)  # training, bf16, other devices: the standard path
        packed = None
        if self.__dict__.get("fast_packed") and x.numel() <= PACK_MAX_ROWS * x.size(-1):
            packed = self._packed_weight(x.numel() // max(x.size(-1), 1))
        return fast_linear(x, w, b, packed)

    def _packed_weight(self, rows: int) -> torch.Tensor | None:
        """The cached packed copy of the weight, rebuilt whenever the weight changed since it was made."""
        key = _version_key(self.weight)
        cache = self.__dict__.get("_fast_cache")
        if key is None:
            return None
        if cache is None or cache[0] != key:
            self.__dict__["_fast_cache"] = cache = (key, pack_weight(self.weight, rows))
        return cache[1]

    def __getstate__(self):
        # oneDNN tensors cannot be deep-copied or pickled; a copy simply packs again when first used
        state = super().__getstate__()
        state.pop("_fast_cache", None)
        return state


def _check_op(weight: torch.Tensor, bias: torch.Tensor | None, packed: bool) -> float:
    """Largest |fast_linear - F.linear| / max(1, |F.linear|) on random inputs with this weight's shape."""
    w = weight.detach().float()
    b = None if bias is None else bias.detach().float()
    g = torch.Generator().manual_seed(0)  # leave the global RNG alone
    worst = 0.0
    with torch.no_grad():
        pw = pack_weight(w, CHECK_ROWS[1]) if packed else None
        for rows in CHECK_ROWS:
            x = torch.randn(rows, w.size(1), generator=g)
            ref = F.linear(x, w, b)
            for p in (None, pw) if packed else (None,):
                diff = (fast_linear(x, w, b, p) - ref).abs().max().item()
                worst = max(worst, diff / max(1.0, ref.abs().max().item()))
    return worst


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if type(m) in (nn.Linear, FastLinear)]


def enable_fast_inference(model: nn.Module, packed: bool = False) -> dict:
    """Give every nn.Linear of `model` the oneDNN inference path; returns a report.

    The op is checked once on the first Linear's shape (1, 3 and 64 rows) against F.linear; if it is missing,
    raises, or differs by more than TOLERANCE, nothing changes and the report says why.
    Report: {"enabled", "path" ("onednn-dense" | "onednn-packed" | "standard"), "max_abs_diff" (relative to
    max(1, |F.linear|); None if not measured), "reason", "layers", "extra_bytes" (packed copies, once built)}.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"enable_fast_inference needs a torch.nn.Module, not {type(model).__name__}.")
    layers = _linears(model)
    report = {"enabled": False, "path": "standard", "max_abs_diff": None, "reason": "", "layers": 0,
              "extra_bytes": 0}
    if not layers:
        report["reason"] = "The model has no nn.Linear layers."
        return report
    try:
        diff = _check_op(layers[0].weight, layers[0].bias, packed)
    except (AttributeError, RuntimeError, NotImplementedError) as e:  # op missing or unsupported on this CPU
        report["reason"] = f"oneDNN linear is unavailable ({type(e).__name__}: {str(e).splitlines()[0][:120]})."
        return report
    report["max_abs_diff"] = diff
    if not diff <= TOLERANCE:  # also catches NaN
        report["reason"] = f"oneDNN linear differs from F.linear by {diff:.2e} (> {TOLERANCE:.0e})."
        return report
    for m in layers:
        m.__class__ = FastLinear  # same object and parameters; only forward changes
        m.fast_packed = packed
        m.__dict__.pop("_fast_cache", None)
    report.update(enabled=True, path="onednn-packed" if packed else "onednn-dense", layers=len(layers),
                  extra_bytes=sum(m.weight.numel() * 4 for m in layers) if packed else 0,
                  reason="verified against F.linear")
    return report


def fast_inference_path(model: nn.Module) -> str:
    """Which path the model's fp32 inference matmuls take now: "onednn-dense", "onednn-packed" or "standard"."""
    fast = [m for m in model.modules() if isinstance(m, FastLinear)]
    if not fast:
        return "standard"
    return "onednn-packed" if any(m.__dict__.get("fast_packed") for m in fast) else "onednn-dense"


def refresh_fast_inference(model: nn.Module) -> None:
    """Drop cached packed weights (needed only after in-place edits through `.data`, which skip `_version`)."""
    for m in model.modules():
        if isinstance(m, FastLinear):
            m.__dict__.pop("_fast_cache", None)


def disable_fast_inference(model: nn.Module) -> int:
    """Switch every FastLinear back to nn.Linear and free packed copies; returns how many were switched."""
    n = 0
    for m in model.modules():
        if type(m) is FastLinear:
            m.__dict__.pop("_fast_cache", None)
            m.__dict__.pop("fast_packed", None)
            m.__class__ = nn.Linear
            n += 1
    return n
