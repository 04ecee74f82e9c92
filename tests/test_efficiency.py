"""Efficiency: GQA conversion (identity, group means, base untouched), KV-cache bytes == the calculator's formula,
the forward-pass profile (keys, parts add up, FLOPs vs the calculator), the profile CLI, the Efficiency tab's
handlers for good and bad input, and its API endpoints (the KV-cache endpoint moved here from the Sampling tab)."""
import json

import gradio as gr
import pytest
import torch
from conftest import drain, run_cli, serve, state_checksum

from tabs import efficiency as eff
from tabs.kit.sessions import SessionStore
from tinygpt import GPT, GPTConfig, convert_kv_heads, flops_per_token, kv_cache_bytes, kv_cache_measurement
from tinygpt.compute import FORWARD_COMPONENTS, forward_flops
from tinygpt.efficiency import compare_kv_heads, kv_cache_latency, measure_attention, profile_forward, uptrain


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small ops on a busy 2-core machine run faster on one thread (restored for the other test files)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32)
    cfg.update(kw)
    model = GPT(GPTConfig(**cfg)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def randomise_biases(model, seed=1):
    """GPT's init sets biases to 0, which would hide a bias that is not pooled."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


IDS = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(3))


# ---- convert_kv_heads --------------------------------------------------------------------------------
def test_convert_identity_gives_same_logits_and_new_tensors():
    base = tiny()
    randomise_biases(base)
    same = convert_kv_heads(base, 4)
    assert same is not base and same.config.kv_heads == 4
    assert torch.equal(same(IDS)[0], base(IDS)[0])
    base_ptrs = {p.data_ptr() for p in base.parameters()}
    assert not base_ptrs & {p.data_ptr() for p in same.parameters()}  # its own tensors: trainable without harm
    assert same.lm_head.weight is same.transformer.wte.weight  # tying kept
    shared = convert_kv_heads(base, 2, share=True)  # for measuring side by side: only q/k/v are new tensors
    new = {n for n, p in shared.named_parameters() if p.data_ptr() not in base_ptrs}
    assert new == {f"transformer.h.{i}.attn.c_attn.{w}" for i in range(2) for w in ("weight", "bias")}


def test_compare_kv_heads_side_by_side(tok):
    base = tiny(vocab_size=50257)
    before = state_checksum(base)
    out = compare_kv_heads(base, tok, [4, 2, 1], [8, 32], "To be, or not to be, that is the question.", batch=2,
                           rounds=2, decode_steps=2)
    assert [r["label"] for r in out] == ["MHA", "GQA-2", "MQA"] and state_checksum(base) == before
    for r in out:
        assert [row["allocated_bytes"] for row in r["rows"]] == [
            kv_cache_bytes(base.config, 2, L, "fp32", r["n_kv_head"]) for L in (8, 32)]
        assert all(row["ms_per_token"] > 0 for row in r["rows"]) and r["perplexity"] > 1
    assert compare_kv_heads(base, tok, [4, 1], [8], "Hello there.", should_stop=lambda: True) == []


@pytest.mark.parametrize("n_kv", [2, 1])
def test_convert_is_the_group_mean(n_kv):
    base = tiny()
    randomise_biases(base)
    new = convert_kv_heads(base, n_kv)
    C, hs, r = 32, 8, 4 // n_kv
    for blk_old, blk_new in zip(base.transformer.h, new.transformer.h):
        W, b = blk_old.attn.c_attn.weight, blk_old.attn.c_attn.bias  # rows: 4 q heads, 4 k heads, 4 v heads
        W2, b2 = blk_new.attn.c_attn.weight, blk_new.attn.c_attn.bias  # rows: 4 q heads, n_kv k, n_kv v
        assert W2.shape == (C + 2 * n_kv * hs, C)
        assert torch.equal(W2[:C], W[:C]) and torch.equal(b2[:C], b[:C])  # queries untouched
        for part in (0, 1):  # 0 = keys, 1 = values
            old0, new0 = C + part * 4 * hs, C + part * n_kv * hs
            for g in range(n_kv):
                heads = [W[old0 + h * hs: old0 + (h + 1) * hs] for h in range(g * r, (g + 1) * r)]
                biases = [b[old0 + h * hs: old0 + (h + 1) * hs] for h in range(g * r, (g + 1) * r)]
                torch.testing.assert_close(W2[new0 + g * hs: new0 + (g + 1) * hs], sum(heads) / r)
                torch.testing.assert_close(b2[new0 + g * hs: new0 + (g + 1) * hs], sum(biases) / r)
    for (k, v), (k2, v2) in zip(base.state_dict().items(), new.state_dict().items()):
        assert k == k2
        if "c_attn" not in k:
            assert torch.equal(v, v2), k


def test_convert_exact_when_grouped_heads_are_equal():
    """If the heads of each group already hold the same K/V weights, pooling changes nothing: the logits must equal
    the base's. This checks the grouping convention (query head i reads K/V head i // group size) end to end."""
    base = tiny()
    randomise_biases(base)
    hs = 8
    with torch.no_grad():
        for blk in base.transformer.h:
            W, b = blk.attn.c_attn.weight, blk.attn.c_attn.bias
            for start in (32, 64):  # keys, values
                for h in (1, 3):  # head 1 := head 0, head 3 := head 2 (groups {0,1}, {2,3})
                    W[start + h * hs: start + (h + 1) * hs] = W[start + (h - 1) * hs: start + h * hs]
                    b[start + h * hs: start + (h + 1) * hs] = b[start + (h - 1) * hs: start + h * hs]
    torch.testing.assert_close(convert_kv_heads(base, 2)(IDS)[0], base(IDS)[0], atol=1e-5, rtol=1e-5)
    # and back up: repeating each grouped head is exact
    gqa = convert_kv_heads(base, 2)
    torch.testing.assert_close(convert_kv_heads(gqa, 4)(IDS)[0], gqa(IDS)[0], atol=1e-6, rtol=1e-6)


def test_convert_never_modifies_the_base_and_checks_input():
    base = tiny()
    before = state_checksum(base)
    for n in (4, 2, 1):
        m = convert_kv_heads(base, n)
        uptrain(m, torch.randint(0, 97, (400,), generator=torch.Generator().manual_seed(0)), steps=2, batch_size=2,
                context=16)
    assert state_checksum(base) == before and not any(p.requires_grad for p in base.parameters())
    for bad in (3, 0, -2, 5, True, 2.0, "2"):
        with pytest.raises(ValueError):
            convert_kv_heads(base, bad)
    grouped = tiny(n_head=12, n_embd=48, n_kv_head=4)
    with pytest.raises(ValueError, match="nest"):
        convert_kv_heads(grouped, 6)  # 12 heads in groups of 3 vs groups of 2: no K/V head maps to one group


# ---- KV-cache bytes == calculator --------------------------------------------------------------------
@pytest.mark.parametrize("n_kv", [4, 2, 1])
@pytest.mark.parametrize("dtype,name,size", [(torch.float32, "fp32", 4), (torch.bfloat16, "bf16", 2),
                                             (torch.float16, "fp16", 2)])
def test_kv_bytes_allocated_equal_the_calculator(n_kv, dtype, name, size):
    model = convert_kv_heads(tiny(), n_kv).to(dtype)
    r = kv_cache_measurement(model, [2, 17, 32], batch=3, decode_steps=2)
    assert r["dtype"] == name and r["n_kv_head"] == n_kv and r["label"] == {4: "MHA", 2: "GQA-2", 1: "MQA"}[n_kv]
    for row in r["rows"]:
        L = row["seq_len"]
        assert row["allocated_bytes"] == row["predicted_bytes"] == kv_cache_bytes(model.config, 3, L, name)
        assert row["allocated_bytes"] == 2 * 2 * 3 * L * n_kv * 8 * size  # 2 (K, V) · layers · B · T · kv · hs · e
        assert row["ms_per_token"] > 0 and row["decode_steps"] == min(2, L - 1)
    with pytest.raises(ValueError, match="dtype"):
        kv_cache_measurement(model, [8], dtype="fp32" if name != "fp32" else "bf16")
    for bad in ([1], [33], ["x"], []):
        with pytest.raises(ValueError):
            kv_cache_measurement(model, bad)


# ---- profile -----------------------------------------------------------------------------------------
def test_profile_keys_and_parts_add_up():
    model = tiny(block_size=64)
    r = profile_forward(model, 2, 64, repeats=5)
    assert list(r["seconds"]) == list(r["flops"]) == list(FORWARD_COMPONENTS)
    assert set(FORWARD_COMPONENTS) == {"embedding", "attention", "feed_forward", "layer_norm", "lm_head", "other"}
    assert all(v >= 0 for v in r["seconds"].values()) and r["total_seconds"] > 0
    assert abs(sum(r["seconds"].values()) - r["total_seconds"]) <= 0.15 * r["total_seconds"]
    assert r["flops"] == forward_flops(model.config, 2, 64)


@pytest.mark.parametrize("options", [{}, dict(n_kv_head=2, bias=False, tie_weights=False), dict(mlp="gated"),
                                     dict(norm="rmsnorm", pos_encoding="rope")])
def test_forward_flops_match_the_calculator(options):
    """Without the two additions Kaplan leaves out (position add, residual adds), the components sum to the
    calculator's forward FLOPs per token (2N + 2·n_layer·n_ctx·d) times the tokens."""
    cfg = GPTConfig(vocab_size=97, block_size=64, n_layer=3, n_head=4, n_embd=32, **options)
    f = forward_flops(cfg, 3, 40)
    kaplan = sum(v for k, v in f.items() if k not in ("embedding", "other"))
    assert kaplan == 3 * 40 * flops_per_token(cfg, 40)["per_token_inference"]
    assert f["other"] == 3 * 40 * 2 * 3 * 32


def test_profile_refuses_what_does_not_fit():
    model = tiny()
    with pytest.raises(ValueError, match="longer than"):
        profile_forward(model, 1, 33)
    with pytest.raises(ValueError, match=r"needs about .* \(estimate\), more than the .* can spare"):
        profile_forward(model, 10 ** 9, 32)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            profile_forward(model, bad, 8)
    with pytest.raises(InterruptedError):
        profile_forward(model, 1, 8, should_stop=lambda: True)


def test_profile_cli(tiny_dir):
    res = run_cli("profile", "--model", tiny_dir, "--batch", "2", "--seq-len", "16", "--repeats", "3", "--json",
                  "--threads", "1")
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    assert set(r["seconds"]) == set(r["flops"]) == set(FORWARD_COMPONENTS)
    assert r["total_seconds"] > 0 and r["batch"] == 2 and r["seq_len"] == 16
    assert r["budget"]["action"] == "profile" and r["budget"]["limits"]["run_memory_bytes"] is None
    assert abs(sum(r["seconds"].values()) - r["total_seconds"]) <= 0.15 * r["total_seconds"]
    res = run_cli("profile", "--model", tiny_dir, "--seq-len", "65")
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "longer than" in res.stderr


# ---- attention measured in a child process -----------------------------------------------------------
def test_measure_attention_stops_and_refuses():
    assert measure_attention("sdpa", 1024, should_stop=lambda: True) is None  # the child is killed at once
    with pytest.raises(ValueError, match="estimate"):
        measure_attention("standard", 10 ** 7)  # two 10^14-element matrices
    with pytest.raises(ValueError, match="method"):
        measure_attention("magic", 64)


# ---- the tab's handlers ----------------------------------------------------------------------------------
def test_kv_cache_tab(models, tiny_dir):
    model, tok = models.get(tiny_dir)
    r = kv_cache_latency(model, tok.encode("Hello"), 70)  # crosses the tiny model's 64-token context
    assert r["same_tokens"] and len(r["cached_ms"]) == len(r["nocache_ms"]) == len(r["lengths"]) == 70
    assert r["lengths"][0] == len(tok.encode("Hello")) + 1
    fig, md = drain(eff.on_kv_cache(models, SessionStore(), tiny_dir, False, "Hello", 16))
    assert fig.axes and "the same tokens" in md and "(equal)" in md
    with pytest.raises(gr.Error, match="prompt"):
        drain(eff.on_kv_cache(models, SessionStore(), tiny_dir, False, "  ", 16))


def test_gqa_tab(models, tiny_dir):
    fig, rows, md = drain(eff.on_gqa(models, SessionStore(), tiny_dir, False, 2, "8, 32,64", 2))
    assert [r[0] for r in rows] == ["MHA"] * 3 + ["GQA-2"] * 3 + ["MQA"] * 3
    assert all(r[3] == r[4] and r[5] == "yes" for r in rows)
    model, _ = models.get(tiny_dir)
    assert rows[2][3] == kv_cache_bytes(model.config, 2, 64, "fp32")
    assert fig.axes and "MQA" in md
    for groups, lens, match in ((3, "8", "divide"), (2, "8,x", "whole numbers"), (2, "8,999", "between 2"),
                                ("two", "8", "whole number"), (2, "", "at least one")):
        with pytest.raises(gr.Error, match=match):
            drain(eff.on_gqa(models, SessionStore(), tiny_dir, False, groups, lens, 1))


def test_gqa_uptrain_tab(models, tiny_dir):
    sessions = SessionStore()
    status, fig, md = drain(eff.on_uptrain(models, sessions, tiny_dir, 1, 2, 1e-3))
    assert status.startswith("Done") and "MQA after 2 steps" in md and fig.axes
    with pytest.raises(gr.Error, match="already"):
        drain(eff.on_uptrain(models, sessions, tiny_dir, 4, 2, 1e-3))
    with pytest.raises(gr.Error, match="Learning rate"):
        drain(eff.on_uptrain(models, sessions, tiny_dir, 2, 2, 0))


def test_flash_tab_trace():
    state, slider, fig, md, check = eff.on_flash_trace(10, 4, 4, 8, True, 0)
    n = len(state["steps"])
    assert "equal within 1e-5" in check and "3 skipped" in check and slider.maximum == n
    assert "Step 1/" in md and fig.axes
    kinds = [eff.on_flash_step(state, i)[1] for i in range(1, n + 1)]
    assert all(f"Step {i}/{n}" in k for i, k in enumerate(kinds, 1))
    assert any("skipped" in k for k in kinds) and any("finish Q block" in k for k in kinds)
    assert eff.step_by(state, n, 1) == n and eff.step_by(state, 1, -1) == 1 and eff.step_by(state, 2, 1) == 3
    state, *_ , check = eff.on_flash_trace(9999, 0, 99, 8, False, 1)  # capped, said
    assert "capped" in check and "0 skipped" in check
    with pytest.raises(gr.Error, match="number"):
        eff.on_flash_trace("many", 4, 4, 8, True, 0)
    with pytest.raises(gr.Error, match="Trace"):
        eff.on_flash_step(None, 0)


def test_stop_flag_is_the_tabs_own():
    sessions = SessionStore()
    other = sessions.get(None)["stop"]  # the session's flags (one per tab); set only when the session ends
    flag = eff.fresh_stop(sessions, None)
    assert eff.on_stop(sessions, None) == "Stopping…" and flag.is_set() and not other.is_set()
    assert not eff.fresh_stop(sessions, None).is_set()  # a new run starts unstopped


def test_flash_tab_benchmark():
    sessions = SessionStore()
    rows, fig, md = drain(eff.on_flash_bench(sessions, ["1,024"], ["sdpa"], 64, 1))
    assert rows[0][:2] == [1024, "sdpa"] and rows[0][2] > 0 and rows[0][3] >= 0 and "Done" in md
    gen = eff.on_flash_bench(sessions, ["1,024", "4,096"], ["standard", "sdpa"], 64, 1)
    assert "Measuring standard at 1,024" in next(gen)[2]  # the first case is about to start
    eff.on_stop(sessions, None)  # Stop: the child is killed at once, nothing more runs
    rows, fig, md = drain(gen)
    assert rows == [] and md.startswith("**Stopped** after 0 of 4")
    for lens, methods, match in (([], ["sdpa"], "at least one sequence"), (["99"], ["sdpa"], "not offered"),
                                 (["1,024"], [], "at least one attention")):
        with pytest.raises(gr.Error, match=match):
            drain(eff.on_flash_bench(sessions, lens, methods, 64, 1))


def test_flash_bench_explain_reads_the_numbers():
    def case(T, m, ms, mem):
        return {"T": T, "method": m, "ms": ms, "peak_extra_bytes": mem, "predicted_bytes": None}
    slow = [case(1024, "standard", 10.0, 8e6), case(1024, "tiled", 30.0, 2e5), case(1024, "sdpa", 4.0, 1e6)]
    md = eff.bench_explain(slow, "")
    assert "2.5% of standard's peak memory and 3.0× its time" in md and "loses" in md and "0.40×" in md
    fast = slow + [case(16384, "standard", 900.0, 2e9), case(16384, "tiled", 600.0, 4e6)]
    md = eff.bench_explain(fast, "")
    assert "At 16,384 tokens the tiled version is even *faster*" in md and "loses" not in md


def test_profile_tab(models, tiny_dir):
    sessions = SessionStore()
    fig, rows, md = drain(eff.on_profile(models, sessions, tiny_dir, False, 1, "8,64", 2))
    assert len(rows) == 2 * len(FORWARD_COMPONENTS) and {r[0] for r in rows} == {8, 64}
    assert abs(sum(r[3] for r in rows if r[0] == 64) - 100) < 0.5  # time shares in %
    assert fig.axes and "Reading the profile" in md and "T = 64" in md
    with pytest.raises(gr.Error, match="longer than"):
        drain(eff.on_profile(models, sessions, tiny_dir, False, 1, "8,65", 2))
    with pytest.raises(gr.Error, match="whole numbers"):
        drain(eff.on_profile(models, sessions, tiny_dir, False, 1, "eight", 2))


def test_tab_defaults():
    assert eff.default_groups(4) == 2 and eff.default_groups(12) == 3 and eff.default_groups(1) == 1
    assert eff.default_lengths(256) == "32,64,128,256"
    assert eff.variants_for(GPTConfig(n_head=4, n_embd=32), 2) == [4, 2, 1]


# ---- API (gradio_client) -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(models, tiny_dir):
    from gradio_client import Client

    from app import build_demo

    demo = build_demo(models, default_model=tiny_dir)
    yield Client(serve(demo), verbose=False)
    demo.close()


def test_api_endpoints(client, tiny_dir):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/kv_cache", "/gqa", "/flash_attention", "/profile", "/flash_benchmark", "/gqa_uptrain"} <= names
    plot, md = client.predict(tiny_dir, False, "Hello", 8, api_name="/kv_cache")  # same inputs as before the move
    assert "the same tokens" in md
    plot, table, md = client.predict(tiny_dir, False, 2, "8,16", 1, api_name="/gqa")
    assert [r[5] for r in table["data"]] == ["yes"] * 6
    plot, table, md = client.predict(tiny_dir, False, 1, "16", 2, api_name="/profile")
    assert len(table["data"]) == len(FORWARD_COMPONENTS)
    out = client.predict(8, 4, 4, 4, True, 0, api_name="/flash_attention")
    assert "equal within 1e-5" in out[-1]
    for args, api, expect in (((tiny_dir, False, "", 8), "/kv_cache", "prompt"),
                              ((tiny_dir, False, 3, "8", 1), "/gqa", "divide"),
                              ((tiny_dir, False, 1, "999", 2), "/profile", "longer than")):
        with pytest.raises(Exception) as e:
            client.predict(*args, api_name=api)
        assert expect in str(e.value) and "Traceback" not in str(e.value)
