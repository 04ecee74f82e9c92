"""Tiled FlashAttention-2 forward: equal to torch's SDPA, a faithful trace, and O(T * block) extra memory."""
import math
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from tinygpt.efficiency import attention_memory_prediction, flash_attention, flash_attention_trace, standard_attention


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiled loop runs thousands of tiny ops: on a busy 2-core machine each one waiting at a thread-pool barrier
    makes this file 10x slower, so it runs on one thread (and restores the setting for the other test files)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def qkv(B, H, Tq, hs, Tk=None, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    Tk = Tq if Tk is None else Tk
    return (torch.randn(B, H, Tq, hs, generator=g).to(dtype), torch.randn(B, H, Tk, hs, generator=g).to(dtype),
            torch.randn(B, H, Tk, hs, generator=g).to(dtype))


def max_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T", [1, 7, 65, 130])
@pytest.mark.parametrize("hs", [16, 32, 64])
def test_flash_equals_sdpa(causal, T, hs):
    q, k, v = qkv(2, 3, T, hs)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert max_diff(flash_attention(q, k, v, causal=causal, block_q=32, block_k=16), ref) < 1e-5
    assert max_diff(flash_attention(q, k, v, causal=causal, block_q=16, block_k=48), ref) < 1e-5
    assert max_diff(flash_attention(q, k, v, causal=causal), ref) < 1e-5  # default 64 x 64 blocks


@pytest.mark.parametrize("block_q, block_k", [(1, 1), (1, 200), (200, 1), (7, 5), (300, 300)])
def test_odd_block_sizes(block_q, block_k):
    q, k, v = qkv(1, 2, 100, 32)
    for causal in (True, False):
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        assert max_diff(flash_attention(q, k, v, causal, block_q, block_k), ref) < 1e-5


def test_non_causal_different_lengths_and_scale():
    q, k, v = qkv(2, 2, 5, 16, Tk=70)
    ref = F.scaled_dot_product_attention(q, k, v, scale=0.3)
    assert max_diff(flash_attention(q, k, v, causal=False, block_q=4, block_k=32, scale=0.3), ref) < 1e-5
    assert max_diff(standard_attention(q, k, v, causal=False, scale=0.3), ref) < 1e-5


def test_bfloat16_inputs():
    q, k, v = qkv(1, 2, 90, 32, dtype=torch.bfloat16)
    out = flash_attention(q, k, v, block_q=32, block_k=16)
    assert out.dtype == torch.bfloat16
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    assert max_diff(out, ref) < 2e-2  # bf16 output rounding (8 bits of mantissa)


@pytest.mark.parametrize("causal", [True, False])
def test_standard_attention_equals_sdpa(causal):
    for T, hs in ((1, 16), (65, 32), (130, 64)):
        q, k, v = qkv(2, 3, T, hs, seed=T)
        assert max_diff(standard_attention(q, k, v, causal=causal), F.scaled_dot_product_attention(
            q, k, v, is_causal=causal)) < 1e-5


def test_trace_equals_flash_and_sdpa():
    q, k, v = qkv(1, 1, 23, 8)
    for causal in (True, False):
        out, steps, check = flash_attention_trace(q, k, v, causal=causal, block_q=5, block_k=4)
        assert torch.equal(out, flash_attention(q, k, v, causal=causal, block_q=5, block_k=4))
        assert check["max_abs_diff"] == max_diff(out, F.scaled_dot_product_attention(q, k, v, is_causal=causal))
        assert check["max_abs_diff"] < 1e-5
        finals = [s for s in steps if s["kind"] == "finalise"]
        assert [s["rows"] for s in finals] == [[r, min(r + 5, 23)] for r in range(0, 23, 5)]
        assert torch.tensor([row for s in finals for row in s["output"]]).equal(out[0, 0])
        assert check["tiles"] == math.ceil(23 / 5) * math.ceil(23 / 4)


def test_trace_running_stats_match_full_matrix():
    """m, l and the rescale factor of every tile equal what the full score matrix gives for the keys seen so far."""
    T, bq, bk = 13, 4, 3
    q, k, v = qkv(1, 1, T, 8, seed=3)
    _, steps, _ = flash_attention_trace(q, k, v, causal=True, block_q=bq, block_k=bk)
    S = (q[0, 0] @ k[0, 0].T) / math.sqrt(8)  # (T, T), the independent reference
    S = S.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    for s in steps:
        if s["kind"] != "tile" or s["skipped"]:
            continue
        (r0, r1), (c0, c1) = s["rows"], s["cols"]
        seen = S[r0:r1, :c1]  # every key up to the end of this tile
        m = seen.max(dim=-1).values
        assert torch.allclose(torch.tensor(s["m_after"]), m)
        assert torch.allclose(torch.tensor(s["l_after"]), torch.exp(seen - m[:, None]).sum(-1), atol=1e-6)
        assert torch.allclose(torch.tensor(s["rescale"]), torch.exp(torch.tensor(s["m_before"]) - m))
        assert torch.allclose(torch.tensor(s["scores"]), S[r0:r1, c0:c1])
        assert s["q_block"] == r0 // bq and s["kv_block"] == c0 // bk
    first = [s for s in steps if s["kind"] == "tile" and s["cols"][0] == 0]
    assert all(s["m_before"] == [float("-inf")] * (s["rows"][1] - s["rows"][0]) for s in first)
    assert all(s["rescale"] == [0.0] * len(s["rescale"]) for s in first)  # exp(-inf - m) = 0


@pytest.mark.parametrize("T, bq, bk", [(64, 16, 16), (100, 16, 16), (65, 8, 16), (130, 32, 8), (7, 3, 2), (1, 4, 4)])
def test_causal_skipped_and_masked_tiles(T, bq, bk):
    q, k, v = qkv(1, 1, T, 4)
    _, _, check = flash_attention_trace(q, k, v, causal=True, block_q=bq, block_k=bk)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)  # True where a key is after its query
    Tr, Tc = math.ceil(T / bq), math.ceil(T / bk)
    tiles = [future[i * bq:(i + 1) * bq, j * bk:(j + 1) * bk] for i in range(Tr) for j in range(Tc)]
    assert check["skipped"] == sum(bool(t.all()) for t in tiles)  # fully masked tiles are never computed
    assert check["masked"] == sum(bool(t.any() and not t.all()) for t in tiles)  # partial ones get a mask
    # closed form: query block i needs key blocks 0 .. ceil(r1 / bk) - 1, the rest are skipped
    assert check["skipped"] == sum(Tc - math.ceil(min((i + 1) * bq, T) / bk) for i in range(Tr))
    if bq == bk and T % bq == 0:
        assert check["skipped"] == Tr * (Tr - 1) // 2 and check["masked"] == Tr
    _, _, dense = flash_attention_trace(q, k, v, causal=False, block_q=bq, block_k=bk)
    assert dense["skipped"] == dense["masked"] == 0


@pytest.mark.parametrize("call", [
    lambda: flash_attention(torch.zeros(2, 4, 8), torch.zeros(2, 4, 8), torch.zeros(2, 4, 8)),
    lambda: flash_attention(*qkv(1, 1, 8, 16)[:2], torch.zeros(1, 1, 9, 16)),
    lambda: flash_attention(torch.zeros(1, 2, 8, 16), *qkv(1, 1, 8, 16)[1:]),
    lambda: flash_attention(torch.zeros(1, 1, 8, 32), *qkv(1, 1, 8, 16)[1:]),
    lambda: flash_attention(*qkv(1, 1, 8, 16, Tk=9)),  # causal needs Tq == Tk
    lambda: flash_attention(*qkv(1, 1, 8, 16), block_q=0),
    lambda: flash_attention(*qkv(1, 1, 8, 16), block_k=2.5),
    lambda: flash_attention(*qkv(1, 1, 8, 16), scale=-1.0),
    lambda: flash_attention(torch.zeros(1, 1, 0, 16), torch.zeros(1, 1, 0, 16), torch.zeros(1, 1, 0, 16)),
    lambda: flash_attention(torch.zeros(1, 1, 4, 16, dtype=torch.long), *qkv(1, 1, 4, 16)[1:]),
    lambda: flash_attention([[1.0]], [[1.0]], [[1.0]]),
    lambda: standard_attention(torch.zeros(8, 16), torch.zeros(8, 16), torch.zeros(8, 16)),
    lambda: standard_attention(*qkv(1, 1, 8, 16)[:2], torch.zeros(1, 1, 8, 8)),
    lambda: flash_attention_trace(*qkv(2, 1, 8, 16)),
    lambda: flash_attention_trace(*qkv(1, 1, 2000, 4)),
    lambda: attention_memory_prediction(0, 64),
])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_memory_prediction_formula():
    p = attention_memory_prediction(8192, 64)
    assert p["standard_scores_bytes"] == 8192 ** 2 * 4 == 256 * 2 ** 20  # 256 MiB for one head in float32
    assert p["standard_total_bytes"] == 2 * 8192 ** 2 * 4 + 8192 * 64 * 4
    assert p["output_bytes"] == 8192 * 64 * 4
    assert p["tiled_tile_bytes"] == 2 * 64 * 64 * 4  # the current tile and the previous one
    assert p["tiled_over_standard"] < 0.01
    big = attention_memory_prediction(1024, 64, batch=2, heads=3, dtype_bytes=2)
    assert big["standard_scores_bytes"] == 6 * 1024 ** 2 * 2


class LiveBytes(TorchDispatchMode):
    """Track every tensor an op returns: the largest numel, and the peak bytes of storages alive at once.

    A storage counts from the op that created it until the last tensor using it is garbage collected; storages
    that existed before (q, k, v) are ignored, so `peak` is the extra memory of the attention call.
    """

    def __init__(self, *inputs):
        super().__init__()
        self.ignore = {t.untyped_storage().data_ptr() for t in inputs}
        self.refs, self.size, self.now, self.peak, self.largest = {}, {}, 0, 0, 0

    def _release(self, key):
        self.refs[key] -= 1
        if self.refs[key] == 0:
            self.now -= self.size.pop(key)
            del self.refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.untyped_storage().data_ptr() in self.ignore:
                continue
            self.largest = max(self.largest, t.numel())
            key = t.untyped_storage().data_ptr()
            if key not in self.refs:
                self.refs[key], self.size[key] = 0, t.untyped_storage().nbytes()
                self.now += self.size[key]
                self.peak = max(self.peak, self.now)
            self.refs[key] += 1
            weakref.finalize(t, self._release, key)
        return out


def measure(fn, q, k, v):
    mode = LiveBytes(q, k, v)
    with torch.no_grad(), mode:
        out = fn(q, k, v)
        del out
    assert mode.now == 0  # every intermediate was freed: the bookkeeping is complete
    return mode


@pytest.mark.parametrize("B, H, bq, bk", [(1, 1, 64, 64), (1, 1, 128, 32), (2, 3, 16, 256)])
def test_tiled_extra_memory_is_o_t_block_not_t_squared(B, H, bq, bk):
    T, hs = 512, 64
    q, k, v = qkv(B, H, T, hs)
    std = measure(lambda *a: standard_attention(*a, causal=True), q, k, v)
    tiled = measure(lambda *a: flash_attention(*a, causal=True, block_q=bq, block_k=bk), q, k, v)
    assert std.largest == B * H * T * T  # the score matrix
    assert tiled.largest == B * H * max(T * hs, bq * bk)  # the output, or one tile: never a T x T matrix
    p = attention_memory_prediction(T, hs, batch=B, heads=H, block_q=bq, block_k=bk)
    assert std.peak == p["standard_total_bytes"]  # scores + probabilities + output
    assert 0.85 * p["tiled_total_bytes"] <= tiled.peak <= p["tiled_total_bytes"]  # a tight upper bound
    assert tiled.peak < 0.25 * std.peak  # the target; here under 10 %
