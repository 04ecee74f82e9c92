"""Continuous batching: batched text equals solo text bit for bit, rows leave and join, users stay isolated,
memory is capped with queue positions, and the shared model is never modified."""
import threading

import pytest
import torch
from conftest import drain, state_checksum

from tabs import pruning, sampling
from tinygpt import GPT, GPTConfig, generate, kv_cache_bytes
from tinygpt.batching import (
    ROW_MULTIPLE,
    Batcher,
    Batchers,
    SharedResults,
    kv_bytes_per_row,
    max_rows_for,
    padding_rule,
    weight_bytes,
)
from tinygpt.interpret.pruning import run_configuration

# (prompt ids, rows, max_new_tokens, temperature, top_k, top_p, seed): mixed lengths and knobs, greedy and sampled
REQUESTS = [
    ([464, 3797, 3332], 1, 12, 0.0, None, None, 1),
    ([50256], 1, 9, 1.0, None, None, 2),
    ([40, 716, 257, 3290, 11, 290, 314, 588, 284, 1100, 13], 2, 15, 0.8, 50, None, 3),
    ([15496, 995], 1, 7, 1.3, None, 0.9, 4),
    (list(range(1000, 1030)), 1, 20, 0.7, 10, 0.8, 5),
    ([11, 12, 13, 14, 15], 3, 5, 0.0, None, None, 6),
    (list(range(2000, 2050)), 1, 30, 1.0, None, None, 7),  # 50 + 30 > the tiny context (64): the refill path
]


@pytest.fixture()
def tiny(models, tiny_dir):
    model, tok = models.get(tiny_dir)
    return model


def submit(b, req):
    ids, rows, n, t, k, p, seed = req
    return b.submit(torch.tensor([ids] * rows), n, t, k, p, torch.Generator().manual_seed(seed))


def run_until_done(b):
    while b.step():
        pass


def solo(model, req, **kw):
    b = Batcher(model, start=False, **kw)
    s = submit(b, req)
    run_until_done(b)
    return torch.cat(list(s), 1)


def test_batched_equals_solo_bit_for_bit(tiny):
    before = state_checksum(tiny)
    alone = [solo(tiny, r) for r in REQUESTS]
    b = Batcher(tiny, start=False)
    streams = [submit(b, r) for r in REQUESTS]
    run_until_done(b)
    together = [torch.cat(list(s), 1) for s in streams]
    assert b.batch_sizes[0] == sum(r[1] for r in REQUESTS)  # really one batch
    for r, a, t in zip(REQUESTS, alone, together):
        assert t.shape == (r[1], r[2])
        assert torch.equal(a, t), r
    assert state_checksum(tiny) == before


def test_unpadded_lone_request_equals_generate(tiny):
    """exact=False runs a lone request with exactly generate's matmuls: same tokens, incl. the context refill."""
    for r in REQUESTS:
        ids, rows, n, t, k, p, seed = r
        x = torch.tensor([ids] * rows)
        ref = generate(tiny, x, n, t, k, p, torch.Generator().manual_seed(seed))[:, len(ids):]
        assert torch.equal(solo(tiny, r, exact=False), ref), r


def test_grouped_caches_match_a_full_forward():
    """Independent reference: each group of rows decoded through its own cache at its own position gives the
    logits of running that sequence alone without any cache (every position encoding, GQA/MQA, decoupled head
    width, SwiGLU + RMSNorm, Mixture-of-Experts)."""
    torch.manual_seed(0)
    for kw in (dict(), dict(pos_encoding="sinusoidal"), dict(pos_encoding="rope", n_kv_head=2),
               dict(pos_encoding="none", head_size=12), dict(mlp="gated", norm="rmsnorm", qkv_bias=True, bias=False),
               dict(pos_encoding="rope", n_kv_head=1, n_experts=4, moe_top_k=2)):
        model = GPT(GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32, **kw)).eval()
        seqs = [torch.randint(0, 97, (1, n)) for n in (3, 9, 1)]
        with torch.no_grad():
            caches = [model.new_cache(1, 32) for _ in seqs]
            for s, c in zip(seqs, caches):
                model(s[:, :-1], cache=c) if s.size(1) > 1 else None  # prefill all but the last token
            last = torch.cat([s[:, -1:] for s in seqs])  # (3, 1): three rows at positions 2, 8 and 0
            logits, loss = model(last, cache=caches, last_only=True)
            assert loss is None and logits.shape == (3, 1, 97)
            for row, s in enumerate(seqs):
                ref = model(s)[0][:, -1]
                assert torch.allclose(logits[row, -1], ref[0], atol=1e-5), kw
            assert [c.pos for c in caches] == [3, 9, 1]
        with pytest.raises(ValueError, match="rows"):
            model(last[:2], cache=caches)


def decode_together(model, seqs, min_rows, mult):
    """Prefill each (1, n) sequence alone, then one shared decode step for all of their last tokens, padded with
    dummy rows to at least min_rows and a multiple of mult -> the real rows' logits (len(seqs), 1, V)."""
    caches = [model.new_cache(1, 64) for _ in seqs]
    with torch.no_grad():
        for s, c in zip(seqs, caches):
            model(s[:, :-1], cache=c)
        x = torch.cat([s[:, -1:] for s in seqs])  # (B, 1)
        pad = max(min_rows - x.size(0), 0)
        pad += -(x.size(0) + pad) % mult
        x = torch.cat([x, x.new_zeros(pad, 1)])
        return model(x, cache=caches + [model.new_cache(pad, 1)] if pad else caches, last_only=True)[0][:len(seqs)]


SEQ_LENGTHS = (3, 9, 5, 7, 2, 4, 6)


def test_padding_makes_logits_independent_of_the_neighbours(tiny):
    """Why every forward pass is padded to ROW_MULTIPLE rows: a row's logits are then bit-identical whoever
    shares the step (the matmul kernel for 1-3 rows rounds differently from the one for 4 and more)."""
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(0, 50257, (1, n), generator=g) for n in SEQ_LENGTHS]
    alone = torch.cat([decode_together(tiny, [s], ROW_MULTIPLE, ROW_MULTIPLE) for s in seqs])
    assert torch.equal(decode_together(tiny, seqs, ROW_MULTIPLE, ROW_MULTIPLE), alone)
    assert torch.equal(decode_together(tiny, seqs[2:5], ROW_MULTIPLE, ROW_MULTIPLE), alone[2:5])


def test_measured_padding_rule_keeps_rows_independent(tiny):
    """The padding rule measured on the model (oneDNN: at least 2 rows; MKL: multiples of 4) makes one shared decode
    step give every row the logits it gets alone, for batches of 1 to 7 rows; the batcher uses that rule."""
    min_rows, mult = padding_rule(tiny)
    assert (min_rows, mult) in ((2, 1), (ROW_MULTIPLE, ROW_MULTIPLE))
    assert (Batcher(tiny, start=False).min_rows, Batcher(tiny, start=False).row_multiple) == (min_rows, mult)
    assert (Batcher(tiny, start=False, exact=False).min_rows, Batcher(tiny, start=False, exact=False).row_multiple) \
        == (1, 1)
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(0, 50257, (1, n), generator=g) for n in SEQ_LENGTHS]
    alone = torch.cat([decode_together(tiny, [s], min_rows, mult) for s in seqs])
    for k in range(2, len(seqs) + 1):
        assert torch.equal(decode_together(tiny, seqs[:k], min_rows, mult), alone[:k]), k


def test_padding_rule_falls_back_when_rows_depend_on_the_row_count():
    class RowCountLinear(torch.nn.Linear):  # a matmul whose last bits depend on how many rows it has (like MKL)
        def forward(self, x):
            return super().forward(x) + 1e-7 * (x.size(0) % 4)

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), RowCountLinear(8, 8))
    assert padding_rule(model) == (ROW_MULTIPLE, ROW_MULTIPLE)
    assert padding_rule(torch.nn.Sequential(torch.nn.Linear(8, 8))) in ((2, 1), (ROW_MULTIPLE, ROW_MULTIPLE))


def test_finished_rows_leave_and_new_requests_join(tiny):
    b = Batcher(tiny, start=False)
    a = submit(b, ([1, 2, 3], 1, 8, 0.9, None, None, 1))
    for _ in range(3):
        b.step()
    late = submit(b, ([7, 8], 2, 3, 0.0, None, None, 2))  # arrives mid-batch: joins at the next step
    assert b.rows == 1 and late.position == 0  # not started yet, but rows are free: no waiting
    run_until_done(b)
    assert list(b.batch_sizes) == [1, 1, 1, 3, 3, 3, 1, 1]  # joined, then its 2 rows left after 3 tokens
    assert b.rows == 0 and b.waiting == 0
    assert torch.equal(torch.cat(list(a), 1), solo(tiny, ([1, 2, 3], 1, 8, 0.9, None, None, 1)))
    assert torch.equal(torch.cat(list(late), 1), solo(tiny, ([7, 8], 2, 3, 0.0, None, None, 2)))


def test_cancelled_request_leaves_the_batch(tiny):
    b = Batcher(tiny, start=False)
    keep = submit(b, ([5, 6], 1, 6, 1.0, None, None, 1))
    gone = submit(b, ([9], 1, 6, 1.0, None, None, 2))
    b.step()
    b.step()
    gone.cancel()
    run_until_done(b)
    assert list(b.batch_sizes) == [2, 2, 1, 1, 1, 1]
    assert len(list(gone)) == 2 and len(list(keep)) == 6


def test_row_cap_from_memory_and_queue_positions(tiny):
    c = tiny.config
    per_row = 2 * c.n_layer * c.block_size * c.kv_heads * c.head_dim * 4  # fp32 K and V at full context
    assert kv_bytes_per_row(c, torch.float32) == per_row == kv_cache_bytes(c, 1, c.block_size, "fp32")
    budget = weight_bytes(tiny) + 3 * per_row + per_row // 2
    assert max_rows_for(tiny, budget) == 3
    assert max_rows_for(tiny, 1) == 1  # never below one row: a request always runs eventually
    b = Batcher(tiny, memory_budget=budget, start=False)
    assert b.max_rows == 3
    streams = [submit(b, ([i + 1], 1, 2 + i, 0.8, None, None, i)) for i in range(5)]
    assert [s.position for s in streams] == [0, 0, 0, 1, 2]  # three fit, two must wait for free rows
    b.step()
    assert b.rows == 3 and b.waiting == 2
    assert [s.position for s in streams] == [0, 0, 0, 1, 2]
    assert streams[0].wait_started(0) and not streams[3].wait_started(0)
    run_until_done(b)
    assert max(b.batch_sizes) == 3
    assert [len(list(s)) for s in streams] == [2, 3, 4, 5, 6]
    wide = Batcher(tiny, max_rows=1, start=False)  # a request wider than the cap runs alone
    s = submit(wide, ([1], 3, 2, 0.0, None, None, 0))
    run_until_done(wide)
    assert torch.cat(list(s), 1).shape == (3, 2) and list(wide.batch_sizes) == [3, 3]


def test_bad_requests_fail_at_once(tiny):
    b = Batcher(tiny, start=False)
    with pytest.raises(ValueError, match="Temperature"):
        b.submit([1, 2], 5, temperature=-1)
    with pytest.raises(ValueError, match="top-p"):
        b.submit([1, 2], 5, top_p=0)
    with pytest.raises(ValueError, match="at least one token"):
        b.submit([], 5)
    with pytest.raises(ValueError, match="Block numbers"):
        b.submit([1], 5, layers=[9])
    assert list(b.submit([1], 0)) == [] and b.waiting == 0


def test_layers_are_batched_per_block_list(tiny):
    b = Batcher(tiny, start=False)
    full = submit(b, ([3, 4], 1, 5, 0.0, None, None, 1))
    g = torch.Generator().manual_seed(2)
    pruned = b.submit(torch.tensor([[3, 4]]), 5, 0.0, None, None, g, layers=[0, 2])
    run_until_done(b)
    ref = Batcher(tiny, start=False)
    alone = ref.submit(torch.tensor([[3, 4]]), 5, 0.0, None, None, torch.Generator().manual_seed(2), layers=[0, 2])
    run_until_done(ref)
    assert torch.equal(torch.cat(list(pruned), 1), torch.cat(list(alone), 1))
    assert len(list(full)) == 5


def test_background_loop_isolates_concurrent_users(models, tiny_dir, tiny):
    """Threads sample different prompts through the Sampling handler at once: each gets its own text, the same
    text it gets alone, and the shared model is untouched."""
    before = state_checksum(tiny)
    batchers = Batchers()
    users = [(f"User {i} writes", 1 + i % 3, 6 + 2 * i, [0.0, 0.8, 1.2][i % 3], 50 if i % 2 else 0, i)
             for i in range(8)]

    def run(u):
        prompt, n, new, t, k, seed = u
        return drain(sampling.on_sample(models, tiny_dir, False, prompt, n, new, t, k, 1.0, seed, batchers=batchers))

    alone = [run(u)[1]["samples"] for u in users]
    results = [None] * len(users)
    batcher = batchers.get(tiny)
    steps0 = len(batcher.batch_sizes)
    blocker = batcher.submit([1, 2, 3], 2000, 1.0)  # keeps decoding while the users arrive: they must share

    def worker(i):
        results[i] = run(users[i])[1]["samples"]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(users))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    blocker.cancel()
    assert batcher is batchers.get(tiny)  # one batcher per model, shared
    assert max(list(batcher.batch_sizes)[steps0:]) > 2  # the blocker and users shared steps
    for u, a, r in zip(users, alone, results):
        assert r == a
        assert len(r) == u[1] and all(s.startswith(u[0]) for s in r)
    assert state_checksum(tiny) == before
    batchers.close()


def test_sample_handler_shows_the_queue_position(models, tiny_dir, tiny):
    b = Batcher(tiny, max_rows=1, start=False)
    first = submit(b, ([1, 2], 1, 3, 0.0, None, None, 0))  # takes the only row
    gen = sampling.stream_samples(tiny, models.get(tiny_dir)[1], "Hi", 1, 4, 0.0, None, None, 1, every_s=0.01,
                                  batcher=b)
    assert next(gen) == ([""], 0, 1)  # no tokens yet, first in line for the taken row
    run_until_done(b)
    assert len(list(first)) == 3
    last = list(gen)[-1]
    assert last[1] == 4 and last[2] == 0
    other = Batcher(tiny)  # with its own background loop
    ref = drain(sampling.stream_samples(tiny, models.get(tiny_dir)[1], "Hi", 1, 4, 0.0, None, None, 1,
                                        batcher=other))
    other.close()
    assert last[0] == ref[0]


def test_app_lets_every_sampler_in_at_once(models, tiny_dir):
    """With batching the /sample event has its own queue without a concurrency limit (the batcher serialises the
    model work); without it, /sample stays in the one-at-a-time model queue. Every heavy run has its own queue
    without a limit: the room's run hub (tabs/kit/runs.py) schedules them, so a Train click never waits in Gradio's
    queue behind a scaling sweep, and a student following a run only waits on that run."""
    from app import build_demo, launch_kwargs

    on = {d.api_name: d for d in build_demo(models, tiny_dir, batchers=Batchers()).fns.values()}
    assert (on["sample"].concurrency_id, on["sample"].concurrency_limit) == ("sample", None)
    for name in ("train", "finetune", "dpo", "rlhf", "rlhf_ppo", "scaling", "gqa_uptrain"):
        assert (on[name].concurrency_id, on[name].concurrency_limit) == (name, None), name
    # pruning goes through the batcher too: its own queue, no limit; the distribution (mostly drawing) stays queued
    assert (on["prune"].concurrency_id, on["prune"].concurrency_limit) == ("prune", None)
    assert on["sample_distribution"].concurrency_id == "model"
    off = {d.api_name: d for d in build_demo(models, tiny_dir, batchers=None).fns.values()}
    assert off["sample"].concurrency_id == "model"
    assert off["prune"].concurrency_id == off["sample_distribution"].concurrency_id == "model"
    assert launch_kwargs()["max_threads"] >= 100  # a lecture hall of streaming handlers, each holding a thread


def test_moe_models_fall_back_to_solo_forward_passes():
    """MoE: the rows reaching an expert depend on the neighbours, so each request runs its own forward pass
    (still queued, streamed and capped by the batcher) and its text equals the text it gets alone."""
    torch.manual_seed(0)
    moe = GPT(GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32, n_experts=4,
                        moe_top_k=2)).eval()
    reqs = [([5, 6, 7], 1, 6, 0.9, None, None, 1), ([1], 2, 4, 0.0, None, None, 2), ([9, 9], 1, 5, 1.2, 20, 0.9, 3)]
    alone = [solo(moe, r) for r in reqs]
    calls = []
    hook = moe.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape))
    b = Batcher(moe, start=False)
    assert b.solo and not Batcher(GPT(GPTConfig(vocab_size=97, block_size=32, n_layer=1, n_head=2, n_embd=16)),
                                  start=False).solo
    streams = [submit(b, r) for r in reqs]
    b.step()
    assert len(calls) == 3 and all(s[0] % 4 == 0 for s in calls)  # one padded forward pass per request
    run_until_done(b)
    hook.remove()
    assert b.batch_sizes[0] == 4  # still one batcher step for all their rows
    for r, a, s in zip(reqs, alone, streams):
        assert torch.equal(torch.cat(list(s), 1), a), r


class SlowBatcher(Batcher):
    """A batcher whose steps take a while, so a request is still decoding when Stop is pressed."""

    def step(self):
        import time
        time.sleep(0.02)
        return super().step()


class SlowBatchers(Batchers):
    def get(self, model):
        with self._lock:
            if id(model) not in self._batchers:
                self._batchers[id(model)] = SlowBatcher(model, max_rows=4)
            return self._batchers[id(model)]


def test_stop_button_takes_the_rows_out_of_the_batch(models, tiny_dir, tiny):
    """Through the served app (api_name /sample, as before batching): the Stop button cancels the streaming
    request, and its rows leave the batch instead of decoding to the end; a request waiting in the queue shows
    its place and leaves the queue when stopped."""
    import time

    from conftest import serve
    from gradio_client import Client

    from app import build_demo

    batchers = SlowBatchers()
    batcher = batchers.get(tiny)
    demo = build_demo(models, tiny_dir, batchers=batchers)
    client = Client(serve(demo), verbose=False)
    try:
        assert "/sample" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        job = client.submit(tiny_dir, False, "Stop me", 2, 500, 0.8, 50, 1.0, 1, api_name="/sample")
        for _ in range(600):  # wait until it streams tokens
            if batcher.rows == 2 and batcher.steps > 3:
                break
            time.sleep(0.05)
        assert batcher.rows == 2
        blocker = batcher.submit(torch.tensor([[1, 2]] * 2), 500, 1.0)  # 2 + 2 rows: the cap (4) is full now
        other = Client(client.src, verbose=False)  # another student: Stop cancels only its own session's events
        queued = other.submit(tiny_dir, False, "Me next", 1, 5, 0.8, 50, 1.0, 2, api_name="/sample")
        for _ in range(600):
            if batcher.waiting == 1 and any("number 1 in the queue" in str(o[0]) for o in queued.outputs()):
                break
            time.sleep(0.05)
        assert any("number 1 in the queue" in str(o[0]) for o in queued.outputs())
        job.cancel()  # what the Stop button does
        for _ in range(600):
            if batcher.waiting == 0 and batcher.rows <= 3:  # the blocker + the queued request, now decoding
                break
            time.sleep(0.05)
        assert batcher.waiting == 0 and batcher.rows <= 3
        steps = batcher.steps
        assert steps < 500  # stopped long before its 500 tokens
        html, js = queued.result(timeout=60)  # the waiting student got in when the rows were freed
        assert js["samples"][0].startswith("Me next") and "number" not in html
        blocker.cancel()
        for _ in range(600):
            if batcher.rows == 0:
                break
            time.sleep(0.05)
        assert batcher.rows == 0 and batcher.waiting == 0
    finally:
        client.close() if hasattr(client, "close") else None
        demo.close()
        batchers.close()


# ---- the other short model actions: pruning configurations ------------------------
def test_shared_results_compute_once_for_concurrent_callers():
    shared, calls = SharedResults(maxsize=2), []
    gate = threading.Event()

    def compute():
        calls.append(1)
        gate.wait(5)  # the others arrive while the first still computes
        return {"answer": len(calls)}

    out = [None] * 6
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, shared.get("k", compute))) for i in range(6)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(timeout=30)
    assert len(calls) == 1 and shared.computed == 1 and all(o is out[0] for o in out)
    shared.get("a", lambda: 1)
    shared.get("b", lambda: 2)  # beyond maxsize: the least recently used key ("k") goes
    assert shared.get("k", lambda: "again") == "again" and shared.computed == 4


def test_pruning_configuration_through_the_batcher(models, tiny_dir, tiny):
    """A pruned configuration generated through the batcher next to other users gets the text it gets through
    the batcher alone; its ms/token is the median of the forward passes that produced its tokens; the perplexity
    equals the unshared one and is computed once per (blocks, passage)."""
    tok = models.get(tiny_dir)[1]
    ref = "The quick brown fox jumps over the lazy dog. " * 3
    alone_b = Batcher(tiny)
    alone = run_configuration(tiny, tok, "Once upon", [0, 2], 12, 0.9, 20, None, 7, ref, batcher=alone_b)
    alone_b.close()
    plain = run_configuration(tiny, tok, "Once upon", [0, 2], 12, 0.9, 20, None, 7, ref)
    b, shared = Batcher(tiny), SharedResults()
    blocker = b.submit([1, 2, 3], 2000, 1.0)  # someone else decoding with all blocks
    same_blocks = b.submit(torch.tensor([[5, 6, 7]]), 400, 1.0, layers=[0, 2])  # and someone with the same blocks
    got = run_configuration(tiny, tok, "Once upon", [0, 2], 12, 0.9, 20, None, 7, ref, batcher=b, shared=shared)
    again = run_configuration(tiny, tok, "Once upon", [0, 2], 12, 0.9, 20, None, 7, ref, batcher=b, shared=shared)
    blocker.cancel()
    same_blocks.cancel()
    b.close()
    assert got["text"] == alone["text"] == again["text"] and len(got["new_ids"]) == 12
    assert max(b.batch_sizes) >= 3  # it really shared steps
    assert got["ms_per_token"] > 0
    assert got["perplexity"] == plain["perplexity"] and shared.computed == 1


def test_prune_handler_isolates_concurrent_users(models, tiny_dir, tiny):
    """Several users press Run configurations at once (batching on): each gets the texts and perplexities of a run
    alone, the logit lens and each (blocks, passage) perplexity are computed once, the model is unchanged."""
    before = state_checksum(tiny)
    ref = "To be, or not to be, that is the question. " * 4
    users = [(f"User {i} says", ["even", "first half"], 10 + i, 0.8, 20, i) for i in range(5)]

    def run(u, batchers):
        prompt, configs, new, t, k, seed = u
        *_, js = drain(pruning.on_prune(models, tiny_dir, configs, "0", prompt, new, t, k, seed, ref,
                                        batchers=batchers))
        return [(c["text"], c["perplexity"]) for c in js["configurations"]]

    alone = [run(u, Batchers()) for u in users]
    batchers = Batchers()
    results = [None] * len(users)
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, run(users[i], batchers)))
               for i in range(len(users))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for u, a, r in zip(users, alone, results):
        assert r == a and len(r) == 3 and all(text.startswith(u[0]) for text, _ in r)
    # 3 configurations' perplexities on one passage + 5 prompts' logit lenses, each computed once
    assert batchers.shared.computed == 3 + len(users)
    assert state_checksum(tiny) == before
    batchers.close()


def test_page_updates_thin_out_when_the_room_shares_the_batcher():
    """Each streamed update costs the server Python time the decode loop also needs: alone every 0.15 s, 40 users
    together ~25 updates/s, never more than 2 s apart."""
    assert sampling.update_interval(0.15, 1) == 0.15
    assert sampling.update_interval(0.15, 40) == pytest.approx(40 / sampling.UPDATES_PER_S)
    assert sampling.update_interval(0.15, 1000) == sampling.MAX_UPDATE_S
    assert sampling.update_interval(0.01, 1) == pytest.approx(1 / sampling.UPDATES_PER_S)  # the room budget wins
