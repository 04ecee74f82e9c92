"""Continuous batching: many generation requests share one forward pass per decoding step.

Decoding one token of GPT-2 on a CPU is bound by reading the weights from memory, so a step for 40 rows costs
little more than a step for one. A `Batcher` runs one background loop per model; every `submit(...)` adds a
request (its prompt rows, max_new_tokens, temperature/top-k/top-p and its own seeded generator) and returns a
`Stream` that yields each new token as soon as it is produced. Each step of the loop:

  1. admits waiting requests while the rows fit under the cap (`max_rows`), oldest first: a request that
     arrives while others are decoding joins at the next step (continuous batching);
  2. runs one forward pass per group of requests that feed the same number of tokens with the same blocks:
     newcomers their prompt (the prefill), the others their last token. Every request keeps its own KV cache
     (`model(x, cache=[cache_a, cache_b, ...])`): the weight matmuls run for all rows at once, attention runs
     per request, so each row sees only its own prompt at its own positions - no padding, no masks;
  3. samples each request's next token with `sample_next_token`, its own knobs and its own generator;
  4. lets finished (or cancelled) requests leave the batch: the next step is smaller.

Same seed, same settings -> same text, alone or in a batch. The last bits of a matmul row can depend on how
many rows the matmul has: on this CPU MKL uses one kernel for 1 row, another for 2-3 rows, and from 4 rows on
results per row agree whatever the row count - but with several threads it splits the rows among them in
multiples of 4, so a leftover of 1-3 rows per thread takes the small-row kernel again. oneDNN (the fast path
`load_model` turns on) has one kernel for 1 row and another for all row counts from 2 on. So every forward pass is
padded with dummy rows (their own scratch cache, thrown away) by a rule measured on the model when its batcher is
made (`padding_rule`): at least 2 rows when every Linear of the model gives the same rows for 2..64 rows at once,
otherwise a multiple of ROW_MULTIPLE. The price of "same text alone or batched": a lone request runs the many-row
kernel, ~30 ms per GPT-2 step here against ~23 ms for tinygpt.generate's 1-row kernel (exact=False skips it).
tests/test_batching.py checks the identity bit for bit; benchmarks/bench_batching.py measures how often the
batcher's text differs from the unbatched `tinygpt.generate` (which multiplies 1-row matrices: a last-bit
difference can flip a near-tie there). Mixture-of-Experts layers send a varying number of rows to each expert
(whatever the padding), so for MoE models the batcher falls back to solo generation: every request still queues,
joins, leaves and streams through the batcher, but runs its own forward pass (`Batcher.solo`).

Layer pruning runs go through the same loop (`submit(..., layers=...)`: the rows running the same blocks share a
forward pass), and `SharedResults` computes a deterministic result (a pruned configuration's perplexity, a logit
lens) once for everyone who asks for it at the same time. (The next-token distribution does not use the batcher:
its forward pass is ~10% of its time, drawing the chart is most of the rest; batching it was measured slower.)

Memory stays bounded: the cap on rows comes from the model size and the KV-cache bytes of one row at full
context (`tinygpt.compute.kv_cache_bytes`, the calculator's own formula): (budget - weights) // bytes per row.
Requests beyond it wait in order; `Stream.position` is their place in the queue.
"""
from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import OrderedDict
from collections import deque
from typing import Iterator, Optional, Sequence

import torch
from torch import nn

from .compute import kv_cache_bytes
from .dtypes import dtype_name
from .sampling import check_sampling_args, sample_next_token

ROW_MULTIPLE = 4  # the conservative padding (MKL): a multiple of 4 rows per pass; padding_rule may allow less
DEFAULT_MEMORY_BUDGET = 4 * 1024 ** 3  # bytes for one batcher: the weights plus every row's KV cache
PREFILL_TOKENS = 2048  # prompt tokens per prefill forward pass at most (bounds the activations of a join)
_END = object()  # end-of-stream marker in a Stream's queue


def weight_bytes(model) -> int:
    """Bytes of the model's parameters (a tied matrix counted once)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def kv_bytes_per_row(config, dtype: torch.dtype) -> int:
    """KV-cache bytes of one row at full context: 2 * n_layer * block_size * n_kv_head * head_dim * element."""
    return kv_cache_bytes(config, 1, config.block_size, dtype_name(dtype, "fp32"))


def max_rows_for(model, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> int:
    """Rows that fit in `memory_budget` bytes next to the weights, every row's cache at full context (>= 1)."""
    p = next(model.parameters())
    free = memory_budget - weight_bytes(model)
    return max(1, free // kv_bytes_per_row(model.config, p.dtype))


CHECK_ROWS = (2, 3, 4, 5, 7, 8, 13, 16, 31, 40)  # row counts compared with the first rows of a 64-row matmul


def padding_rule(model) -> tuple[int, int]:
    """(min_rows, row_multiple): the padding that makes a row's results independent of how many rows share a
    forward pass, measured on this model and machine. Each distinct Linear (class, shape) of the model multiplies 64
    random rows at once, then the first M rows for every M in CHECK_ROWS; if every result equals the first M rows of
    the 64-row one bit for bit, any pass of 2 rows or more is safe: (2, 1) (oneDNN on the CPUs we measured). Otherwise
    the conservative rule (ROW_MULTIPLE, ROW_MULTIPLE) stays (MKL: see the module docstring)."""
    p = next(model.parameters())
    shapes: dict = {}
    for m in model.modules():
        if isinstance(m, nn.Linear):
            shapes.setdefault((type(m), m.in_features, m.out_features), m)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in shapes.values():
            x = torch.randn(64, m.in_features, generator=g).to(p.dtype)  # (64, in)
            ref = m(x)  # (64, out)
            if not all(torch.equal(m(x[:k]), ref[:k]) for k in CHECK_ROWS):
                return ROW_MULTIPLE, ROW_MULTIPLE
    return 2, 1


class Stream:
    """One request's tokens, as they are produced. Iterate it to get (rows, 1) LongTensors, one per step,
    exactly what `tinygpt.generate_stream` yields. `position`: 0 when decoding or joining at the next step,
    k > 0 when k-th in line for rows that are still taken (the cap on rows)."""

    def __init__(self, rows: int):
        self.rows = rows
        self.position = 0
        self._q: queue.Queue = queue.Queue()
        self._started = threading.Event()
        self.cancelled = False
        self.forward_s: list = []  # seconds of each forward pass that produced one of this request's tokens

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        item = self._q.get()
        if item is _END:
            self._q.put(_END)  # stays finished for any later next()
            raise StopIteration
        if isinstance(item, BaseException):
            self._q.put(item)
            raise item
        return item

    def wait_started(self, timeout: Optional[float] = None) -> bool:
        """True once the request is decoding (False if still queued after `timeout` seconds)."""
        return self._started.wait(timeout)

    def cancel(self) -> None:
        """Leave the batch (or the queue) at the next step; iteration ends there."""
        self.cancelled = True
        self._started.set()
        self._q.put(_END)


class _Request:
    def __init__(self, idx, max_new_tokens, temperature, top_k, top_p, generator, layers, max_len, stream):
        self.seq = idx  # (rows, T): prompt + generated tokens so far
        self.rows = idx.size(0)
        self.max_new = max_new_tokens
        self.knobs = (temperature, top_k, top_p, generator)
        self.layers = layers  # tuple of block indices
        self.max_len = max_len  # KV-cache length this request needs (the context when it outgrows it)
        self.cache = None
        self.done = 0
        self.stream = stream


class Batcher:
    """One background decode loop for one model; `submit` is thread-safe.

    memory_budget: bytes for the weights plus every row's KV cache (the cap on rows derives from it);
    max_rows: set the cap directly instead. start=False: no background loop, call `step()` yourself.
    exact=False: no padding rows; a lone 1-row request then runs the 1-row matmul kernel, as tinygpt.generate does
    (faster alone on a CPU), but a row's last bits may then depend on how many rows share the step.
    `batch_sizes` remembers the rows decoded together at each recent step. `solo` (Mixture-of-Experts models):
    every request runs its own forward pass, so its text stays the same as alone.
    """

    def __init__(self, model, memory_budget: int = DEFAULT_MEMORY_BUDGET, max_rows: Optional[int] = None,
                 start: bool = True, exact: bool = True, history: int = 10_000):
        self.model = model
        self.memory_budget = memory_budget
        self.max_rows = int(max_rows) if max_rows is not None else max_rows_for(model, memory_budget)
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be at least 1 (got {max_rows}).")
        self.batch_sizes: deque = deque(maxlen=history)  # rows decoded together, per step
        self.steps = 0
        self._waiting: deque = deque()
        self._active: list = []
        self._cond = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._autostart = start
        self.exact = exact
        # MoE: a row's expert matmuls have as many rows as tokens routed there in the whole batch, so its last bits
        # would depend on the neighbours: each request then runs its own forward pass (same text as alone)
        self.solo = bool(getattr(model.config, "n_experts", 0))
        # dummy rows per forward pass: at least min_rows, and a multiple of row_multiple (measured: padding_rule)
        self.min_rows, self.row_multiple = padding_rule(model) if exact else (1, 1)

    # ---- the public side ----------------------------------------------------------------------------
    def submit(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: Optional[int] = None,
               top_p: Optional[float] = None, generator: Optional[torch.Generator] = None,
               layers: Optional[Sequence[int]] = None) -> Stream:
        """Queue a request; returns its Stream of (rows, 1) token tensors (the arguments of generate_stream).

        idx: prompt ids, a list of ints or a (rows, T) LongTensor (rows share the generator, as in
        generate_stream). A prompt longer than the context keeps its last block_size tokens."""
        check_sampling_args(temperature, top_k, top_p)
        if not isinstance(idx, torch.Tensor):
            idx = torch.tensor([list(idx)], dtype=torch.long)
        if idx.dim() != 2 or idx.size(0) == 0 or idx.size(1) == 0:
            raise ValueError("The prompt must contain at least one token.")
        if int(max_new_tokens) != max_new_tokens or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a whole number >= 0 (got {max_new_tokens}).")
        layers = tuple(self.model.check_layers(layers))
        block = self.model.config.block_size
        # the cache holds the prompt and every fed token (the last sampled one is never fed); when that is more
        # than the context, it is a full-context cache refilled from the last block tokens, as generate_stream
        needed = min(idx.size(1), block) + int(max_new_tokens) - 1
        stream = Stream(idx.size(0))
        req = _Request(idx.to(torch.long), int(max_new_tokens), temperature, top_k, top_p, generator, layers,
                       min(max(needed, 1), block), stream)
        if req.max_new == 0:
            stream.cancel()
            return stream
        with self._cond:
            if self._closed:
                raise RuntimeError("This batcher is closed.")
            self._waiting.append(req)
            self._number_queue()
            if self._thread is None and self._autostart:
                self._thread = threading.Thread(target=self._loop, name="tinygpt-batcher", daemon=True)
                self._thread.start()
            self._cond.notify()
        return stream

    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: Optional[int] = None,
                 top_p: Optional[float] = None, generator: Optional[torch.Generator] = None,
                 layers: Optional[Sequence[int]] = None) -> torch.Tensor:
        """Like tinygpt.generate, through the batcher: (rows, T) -> (rows, T + max_new_tokens)."""
        if not isinstance(idx, torch.Tensor):
            idx = torch.tensor([list(idx)], dtype=torch.long)
        new = list(self.submit(idx, max_new_tokens, temperature, top_k, top_p, generator, layers))
        return torch.cat([idx] + new, dim=1)

    @property
    def rows(self) -> int:
        """Rows decoding right now."""
        with self._cond:
            return sum(r.rows for r in self._active if not r.stream.cancelled)

    @property
    def requests(self) -> int:
        """Requests decoding right now (each may have several rows)."""
        with self._cond:
            return sum(1 for r in self._active if not r.stream.cancelled)

    @property
    def waiting(self) -> int:
        """Requests queued beyond the cap."""
        with self._cond:
            return len(self._waiting)

    def close(self) -> None:
        """Stop the loop after the current step; requests still queued or decoding end their streams."""
        with self._cond:
            self._closed = True
            for r in itertools.chain(self._waiting, self._active):
                r.stream.cancel()
            self._cond.notify()

    # ---- the decode loop ----------------------------------------------------------------------------
    def _admit(self) -> None:
        """(lock held) Drop cancelled requests, move waiting ones in while they fit, renumber the queue."""
        self._active = [r for r in self._active if not r.stream.cancelled]
        self._waiting = deque(r for r in self._waiting if not r.stream.cancelled)
        rows = sum(r.rows for r in self._active)
        while self._waiting and (rows + self._waiting[0].rows <= self.max_rows or not self._active):
            r = self._waiting.popleft()  # a request wider than the cap still runs, alone
            self._active.append(r)
            rows += r.rows
            r.stream.position = 0
            r.stream._started.set()
        self._number_queue()

    def _number_queue(self) -> None:
        """(lock held) Queue positions: 0 for the waiting requests that fit and join at the next step, then 1, 2,
        ... for those that must wait for rows to be freed (first come, first served)."""
        free = self.max_rows - self.rows  # the condition's lock is re-entrant
        ahead = 0
        for r in self._waiting:
            if not ahead and (r.rows <= free or free == self.max_rows):
                free -= r.rows
                r.stream.position = 0
            else:
                ahead += 1
                r.stream.position = ahead

    def step(self) -> bool:
        """Admit what fits and decode one token for every active request; False when there was nothing to do.
        The background loop calls this; with `start=False` a notebook or a test calls it by hand."""
        with self._cond:
            self._admit()
            active = list(self._active)
        if not active:
            return False
        try:
            with torch.no_grad():
                self._step(active)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory: these requests fail, the loop lives on
            for r in active:
                r.stream._q.put(e)
                r.stream.cancelled = True
        return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._admit()
                while not self._active and not self._closed:
                    self._cond.wait()
                    self._admit()
                if self._closed:
                    return
            self.step()

    def _step(self, active: list) -> None:
        """One token for every active request: one forward pass per (tokens fed, blocks) group (per request
        when solo)."""
        block = self.model.config.block_size
        groups: dict = {}
        for r in active:
            if r.cache is None or r.cache.pos >= r.cache.max_len:  # first step, or the context is full
                inp = r.seq[:, -block:]  # (rows, T): (re)fill a fresh cache from the last block tokens
                r.cache = self.model.new_cache(r.rows, r.max_len, len(r.layers))
            else:
                inp = r.seq[:, -1:]  # (rows, 1): the token sampled last step
            key = (inp.size(1), r.layers, id(r) if self.solo else None)
            groups.setdefault(key, []).append((r, inp))
        for (T, layers, _), items in groups.items():
            for chunk in _chunks(items, T):
                self._forward(chunk, T, layers)
        self.steps += 1
        self.batch_sizes.append(sum(r.rows for r in active))
        with self._cond:
            for r in active:
                if r.done >= r.max_new and not r.stream.cancelled:
                    r.stream.cancel()  # finished: ends the stream; the next _admit drops the request

    def _forward(self, items: list, T: int, layers: tuple) -> None:
        caches = [r.cache for r, _ in items]
        x = torch.cat([inp for _, inp in items])  # (B, T)
        # dummy rows (token 0 at position 0, their own scratch cache), thrown away after the forward pass
        pad = max(self.min_rows - x.size(0), 0)
        pad += -(x.size(0) + pad) % self.row_multiple
        if pad:
            caches.append(self.model.new_cache(pad, T, len(layers)))
            x = torch.cat([x, x.new_zeros(pad, T)])
        t0 = time.perf_counter()
        logits, _ = self.model(x, layers=list(layers), cache=caches, last_only=True)  # (B + pad, 1, V)
        dt = time.perf_counter() - t0
        r0 = 0
        for r, _ in items:
            r.stream.forward_s.append(dt)
            temperature, top_k, top_p, gen = r.knobs
            nxt = sample_next_token(logits[r0:r0 + r.rows, -1, :], temperature, top_k, top_p, gen)  # (rows, 1)
            r0 += r.rows
            r.seq = torch.cat([r.seq, nxt], dim=1)
            r.done += 1
            if not r.stream.cancelled:
                r.stream._q.put(nxt)


def _chunks(items: list, T: int) -> Iterator[list]:
    """Split a group so one prefill forward pass feeds at most PREFILL_TOKENS tokens (one request at least)."""
    chunk, tokens = [], 0
    for r, inp in items:
        if chunk and tokens + r.rows * T > max(PREFILL_TOKENS, T):
            yield chunk
            chunk, tokens = [], 0
        chunk.append((r, inp))
        tokens += r.rows * T
    if chunk:
        yield chunk


class SharedResults:
    """Results of deterministic model computations (a perplexity, a logit lens) shared by everyone who asks for
    the same key: a room pressing Run with the same settings computes each once. One computation runs at a time;
    callers that arrive meanwhile wait, then reuse the answer (least recently used entries beyond `maxsize` go).
    Keys hold their model object (modules hash by identity), so a key never matches another model."""

    def __init__(self, maxsize: int = 256):
        self.maxsize = maxsize
        self.computed = 0  # how many keys were computed (the rest were shared)
        self._results: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, compute):
        """compute() once per key; later and concurrent callers get the same object back."""
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
            value = compute()
            self.computed += 1
            self._results[key] = value
            while len(self._results) > self.maxsize:
                self._results.popitem(last=False)
            return value


class Batchers:
    """One Batcher per model object (a ModelCache hands out one model per (name, dtype)), created on first use
    and shared by every caller; the app makes one of these and passes it to the tabs."""

    def __init__(self, memory_budget: int = DEFAULT_MEMORY_BUDGET, max_rows: Optional[int] = None,
                 exact: bool = True):
        self.memory_budget = memory_budget
        self.max_rows = max_rows
        self.exact = exact
        self._batchers: dict = {}
        self._lock = threading.Lock()
        self.shared = SharedResults()  # deterministic per-prompt results (perplexity, logit lens) computed once

    def get(self, model) -> Batcher:
        with self._lock:
            key = id(model)
            if key not in self._batchers or self._batchers[key].model is not model:
                self._batchers[key] = Batcher(model, self.memory_budget, self.max_rows, exact=self.exact)
            return self._batchers[key]

    def close(self) -> None:
        with self._lock:
            for b in self._batchers.values():
                b.close()
            self._batchers.clear()
