"""The calculator's numbers are proven: counts equal built models, memory equals torch's real allocation, FLOPs
agree with FlopCounterMode, and the CLI and the tab show the same dict without allocating any weights."""
import json
import random

import gradio as gr
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli
from torch.utils.flop_counter import FlopCounterMode

from tabs import calculator
from tabs.common import human, human_bytes
from tinygpt import GPT, PRESETS, GPTConfig, count_parameters, estimate, kv_cache_bytes, training_memory
from tinygpt.cli import main as cli_main
from tinygpt.compute import activation_bytes, flops_per_token, parameter_tensors


def meta_model(cfg):
    with torch.device("meta"):
        return GPT(cfg)


def random_config(rng):
    n_head = rng.choice([1, 2, 3, 4, 6, 8])
    n_kv = rng.choice([k for k in range(1, n_head + 1) if n_head % k == 0])
    return GPTConfig(vocab_size=rng.randint(5, 3000), block_size=rng.randint(1, 300), n_layer=rng.randint(1, 5),
                     n_head=n_head, n_kv_head=rng.choice([None, n_kv]), n_embd=n_head * rng.randint(1, 24),
                     n_inner=rng.choice([None, rng.randint(1, 200)]), bias=rng.random() < 0.5,
                     tie_weights=rng.random() < 0.5)


# ---- parameter counts -------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_match_built_model_and_form(preset):
    cfg = GPTConfig.from_preset(preset)
    m = meta_model(cfg)
    params = list(m.parameters())
    r = estimate(cfg)
    assert r["params"]["total"] == sum(p.numel() for p in params)
    assert parameter_tensors(cfg) == len(params)
    # The tab's form reproduces the preset exactly (FFN multiplier included).
    v = calculator.preset_values(preset)
    form_cfg = calculator.make_config(*v[:9], *v[10:])  # the 9 original fields + the architecture options
    assert count_parameters(form_cfg) == count_parameters(cfg)


def test_random_configs_property():
    rng = random.Random(1234)
    for _ in range(40):
        cfg = random_config(rng)
        m = meta_model(cfg)
        params = list(m.parameters())
        r = estimate(cfg, batch_size=rng.randint(1, 4), seq_len=rng.randint(1, cfg.block_size))
        assert r["params"]["total"] == sum(p.numel() for p in params), cfg
        assert parameter_tensors(cfg) == len(params), cfg
        assert (r["params"]["lm_head"] == 0) == cfg.tie_weights
        assert r["kv_cache_bytes"] == kv_cache_bytes(cfg, r["inputs"]["batch_size"], r["inputs"]["seq_len"], "fp32")
        rows = calculator.breakdown_rows(cfg, r)
        assert [row for row in rows if row[0] == "TOTAL (exact)"][0][2] == f"{r['params']['total']:,}"


# ---- memory: the estimate is what torch allocates -----------------------------------------------------
def allocated_bytes(model, opt):
    nbytes = lambda t: t.numel() * t.element_size()  # noqa: E731
    params = list(model.parameters())  # a tied matrix appears once
    state = [t for s in opt.state.values() for t in s.values() if torch.is_tensor(t)]
    return {"weights": sum(nbytes(p) for p in params), "gradients": sum(nbytes(p.grad) for p in params),
            "optimizer": sum(nbytes(t) for t in state)}


def one_step(cfg, make_opt):
    torch.manual_seed(0)
    model = GPT(cfg)
    opt = make_opt(model.parameters())
    x = torch.randint(0, cfg.vocab_size, (2, cfg.block_size))
    _, loss = model(x, x)
    loss.backward()
    opt.step()
    return allocated_bytes(model, opt)


@pytest.mark.parametrize("bias,tied,n_kv", [(True, True, None), (False, False, 2), (True, False, 1)])
def test_adamw_memory_equals_torch_allocation(bias, tied, n_kv):
    cfg = GPTConfig(n_layer=2, n_head=4, n_kv_head=n_kv, n_embd=32, block_size=16, vocab_size=97, bias=bias,
                    tie_weights=tied)
    real = one_step(cfg, lambda p: torch.optim.AdamW(p, lr=1e-3))
    est = training_memory(cfg, batch_size=2, seq_len=16, dtype="fp32", optimizer="adamw")
    for k in ("weights", "gradients", "optimizer"):
        assert est[k] == real[k], k
    P = count_parameters(cfg)["total"]
    assert est["optimizer"] == 8 * P + 4 * parameter_tensors(cfg)  # m, v + one fp32 step scalar per tensor


def test_sgd_memory_equals_torch_allocation():
    cfg = GPTConfig(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=97)
    real = one_step(cfg, lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9))
    est = training_memory(cfg, 2, 16, "fp32", "sgd")
    assert {k: est[k] for k in real} == real
    assert est["optimizer"] == 4 * count_parameters(cfg)["total"]
    # Plain SGD keeps no state at all: that is why the calculator's "sgd" says "with momentum".
    assert one_step(cfg, lambda p: torch.optim.SGD(p, lr=1e-2))["optimizer"] == 0


def test_mixed_precision_is_16_bytes_per_param_zero_style():
    cfg = GPTConfig.from_preset("gpt2")
    P = count_parameters(cfg)["total"]
    for dtype in ("fp16", "bf16"):
        m = training_memory(cfg, 1, 1024, dtype, "adamw")
        assert m["weights"] == 6 * P and m["gradients"] == 2 * P  # 16-bit copy + fp32 master; 16-bit grads
        assert m["optimizer"] == 8 * P + 4 * parameter_tensors(cfg)
    fp32 = training_memory(cfg, 1, 1024, "fp32", "adamw")
    assert fp32["weights"] + fp32["gradients"] == 8 * P


def test_activation_formula_is_korthikanti_for_16_bit():
    cfg = GPTConfig.from_preset("gpt2")
    s, b, h, a = 1024, 2, cfg.n_embd, cfg.n_head
    act = activation_bytes(cfg, b, s, "bf16")
    assert act["per_layer"] == s * b * h * 34 + 5 * a * s * s * b  # = s·b·h·(34 + 5·a·s/h)
    assert act["outside_blocks"] == 4 * s * b * h + 4 * s * b * cfg.vocab_size
    assert activation_bytes(cfg, b, s, "fp32")["per_layer"] > act["per_layer"]


# ---- FLOPs: agree with torch's FlopCounterMode ----------------------------------------------------------
def math_sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **_):
    """Attention as plain matmuls, so FlopCounterMode sees them (it counts nothing for the fused CPU kernel)."""
    att = (q @ k.transpose(-2, -1)) * scale
    if is_causal:
        T = q.size(-2)
        att = att.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return F.softmax(att, dim=-1) @ v


def counted(fn):
    fc = FlopCounterMode(display=False)
    with fc:
        fn()
    by_op = {str(k): v for k, v in fc.get_flop_counts()["Global"].items()}
    return fc.get_total_flops(), by_op


def test_flops_agree_with_flop_counter(monkeypatch):
    monkeypatch.setattr(F, "scaled_dot_product_attention", math_sdpa)
    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=2, n_head=4, n_kv_head=2, n_embd=64, block_size=32, vocab_size=512)
    model = GPT(cfg)
    B, T = 2, 32
    x = torch.randint(0, cfg.vocab_size, (B, T))
    est = flops_per_token(cfg, T)
    fwd, by_op = counted(lambda: model(x))
    # The full T×T square (what the kernel computes) is exactly twice Kaplan's causal attention term.
    assert by_op["aten.bmm"] == 2 * est["attention_forward"] * B * T
    # The Linear matmuls are 2 FLOPs per weight per token (N also holds biases and LayerNorms: tiny).
    assert by_op["aten.mm"] + by_op["aten.addmm"] == pytest.approx(2 * est["compute_params"] * B * T, rel=0.02)
    assert est["per_token_inference"] * B * T == pytest.approx(fwd, rel=0.05)

    def train_step():
        _, loss = model(x, x)
        loss.backward()
    train, _ = counted(train_step)
    assert train == 3 * fwd  # backward = 2 × forward for every matmul
    assert est["per_token_train"] * B * T == pytest.approx(train, rel=0.05)


# ---- worked examples ---------------------------------------------------------------------------------------
def test_worked_examples_equal_the_formulas():
    cfg = GPTConfig.from_preset("llama-7b")
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head) == (32, 4096, 32)
    D, T = 10 ** 12, 4096
    r = estimate(cfg, batch_size=1, seq_len=T, dtype="fp16", tokens=D, tflops=312.0, mfu=0.4)
    c = count_parameters(cfg)
    N = c["non_embedding"] + cfg.vocab_size * cfg.n_embd
    assert r["flops"]["compute_params"] == N
    assert r["flops"]["train_total"] == 6 * N * D + 6 * cfg.n_layer * T * cfg.n_embd * D
    assert r["flops"]["per_token_inference"] == 2 * N + 2 * cfg.n_layer * T * cfg.n_embd
    assert r["gpu_hours_at_full_utilisation"] == pytest.approx(r["flops"]["train_total"] / 312e12 / 3600)
    assert r["gpu_hours"] == pytest.approx(r["gpu_hours_at_full_utilisation"] / 0.4)
    # KV cache: 2 · 32 layers · 4096 tokens · 32 heads · 128 dims · 2 bytes = 2 GiB.
    assert r["kv_cache_bytes"] == 2 * 32 * 4096 * 32 * 128 * 2 == 2 ** 31
    assert human_bytes(r["kv_cache_bytes"]) == "2.00 GiB"
    assert r["memory_bytes"]["inference"] == 2 * c["total"] + 2 ** 31
    gqa = GPTConfig(n_layer=4, n_head=8, n_kv_head=2, n_embd=256)
    full = kv_cache_bytes(gqa, 1, 100, "fp16", n_kv_head=8)
    assert full == 4 * kv_cache_bytes(gqa, 1, 100, "fp16") == 8 * kv_cache_bytes(gqa, 1, 100, "fp16", 1)
    assert kv_cache_bytes(gqa, 1, 100, "fp32") == 2 * kv_cache_bytes(gqa, 1, 100, "bf16")
    assert human(124_439_808) == "124.44 M"


def test_exercise_answers_text():
    md = calculator.exercise_answers()
    for s in ("124,439,808", "174,604,259,328", "2.00 GiB", "4× smaller", "GPU-hours"):
        assert s in md, s


# ---- the tab's handlers ---------------------------------------------------------------------------------------
def test_gpt3_handler_allocates_nothing(monkeypatch):
    def no_modules(*a, **k):
        raise AssertionError("the calculator must not build a model")
    monkeypatch.setattr(torch.nn.Module, "__init__", no_modules)
    v = calculator.preset_values("gpt3")
    md, rows, mem, kv, js = calculator.on_params(*v[:9], "fp16", "adamw", 1, v[9], 300e9, 312, 0.5)
    assert "174,604,259,328" in md
    assert js["params"]["total"] == 174_604_259_328
    assert set(mem["what"]) == {"training", "inference"} and (mem["GiB"] > 0).all()
    assert set(kv["attention"]) == {"MHA (96 KV heads)", "GQA (24 KV heads)", "MQA (1 KV head)"}
    assert js["flops"]["train_total"] == pytest.approx(
        6 * (174_604_259_328 - 12288 * (50257 + 2048)) * 300e9 + 6 * 50257 * 12288 * 300e9
        + 6 * 96 * 2048 * 12288 * 300e9, rel=1e-9)
    gr.JSON().postprocess(js)  # huge FLOP counts still serialise for the browser


def test_handler_and_cli_show_the_same_numbers(capsys):
    v = calculator.preset_values("gpt2")
    js = calculator.on_params(*v[:9], "bf16", "sgd", 4, 512, 1e6, 100, 0.5)[-1]
    assert cli_main(["params", "--batch-size", "4", "--seq-len", "512", "--dtype", "bf16", "--optimizer", "sgd",
                     "--tokens", "1e6", "--tflops", "100", "--mfu", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == js


@pytest.mark.parametrize("change,match", [
    ({1: 100}, "divisible by n_head"), ({3: 5}, r"divisible by n_kv_head"), ({0: 0}, "n_layer must be a positive"),
    ({4: -3}, "block_size must be a positive"), ({1: 12.5}, "whole number"), ({8: 0}, "multiplier"),
])
def test_handler_invalid_configs_give_plain_errors(change, match):
    v = list(calculator.preset_values("gpt2"))
    for i, value in change.items():
        v[i] = value
    with pytest.raises(gr.Error, match=match):
        calculator.on_params(*v[:9], "fp32", "adamw", 1, 64, 1e12, 312, 0.4)


@pytest.mark.parametrize("batch,seq,tokens,tflops,mfu,match", [
    (1, 4096, 1e12, 312, 0.4, "longer than the context"), (0, 64, 1e12, 312, 0.4, "batch_size"),
    (1, 64, 0, 312, 0.4, "tokens"), (1, 64, 1e12, 0, 0.4, "tflops"), (1, 64, 1e12, 312, 0, "mfu"),
    (1, 64, None, 312, 0.4, "number"),
])
def test_handler_invalid_run_settings(batch, seq, tokens, tflops, mfu, match):
    with pytest.raises(gr.Error, match=match):
        calculator.on_params(*calculator.preset_values("gpt2")[:9], "fp32", "adamw", batch, seq, tokens, tflops, mfu)


def test_tab_builds_with_public_params_api():
    with gr.Blocks() as demo:
        with gr.Tabs():
            calculator.build()
    names = {f.api_name: f.api_visibility for f in demo.fns.values()}
    assert names["params"] == "public"
    assert calculator.family_figure().axes[0].get_yscale() == "log"


# ---- command line -------------------------------------------------------------------------------------------
def test_cli_params_json_keys_and_integers():
    r = run_cli("params", "--preset", "gpt2", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    want = {"params": {"total", "embedding", "attention", "feed_forward", "layer_norm", "lm_head"},
            "memory_bytes": {"weights", "gradients", "optimizer", "activations", "training_total", "inference"},
            "flops": {"per_token_train", "per_token_inference", "train_total"}}
    for section, keys in want.items():
        assert keys <= set(d[section]), section
        assert all(type(d[section][k]) is int for k in keys), section
    assert type(d["kv_cache_bytes"]) is int and isinstance(d["gpu_hours"], float)
    assert d["params"]["total"] == 124_439_808


def test_cli_custom_config_matches_built_model():
    r = run_cli("params", "--n-layer", "3", "--n-embd", "48", "--n-head", "6", "--n-kv-head", "2", "--block-size",
                "40", "--vocab-size", "300", "--no-bias", "--untied", "--ffn-mult", "3", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    cfg = GPTConfig(n_layer=3, n_embd=48, n_head=6, n_kv_head=2, block_size=40, vocab_size=300, bias=False,
                    tie_weights=False, n_inner=144)
    assert d["params"]["total"] == sum(p.numel() for p in meta_model(cfg).parameters())
    assert d["config"]["n_inner"] == 144 and d["inputs"]["seq_len"] == 40


@pytest.mark.parametrize("args,match", [
    (["--n-embd", "100"], "divisible by n_head"), (["--n-head", "8", "--n-kv-head", "3"], "divisible by n_kv_head"),
    (["--n-layer", "0"], "n_layer must be a positive"), (["--n-embd", "-12"], "n_embd must be a positive"),
    (["--batch-size", "0"], "batch_size"), (["--tokens", "-5"], "tokens"), (["--mfu", "1.5"], "mfu"),
    (["--seq-len", "2048"], "longer than the context"), (["--dtype", "fp8"], "invalid choice"),
])
def test_cli_invalid_configs_exit_non_zero(args, match, capsys):
    assert cli_main(["params", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and match in err and "\n" not in err


def test_cli_invalid_config_subprocess():
    r = run_cli("params", "--n-embd", "100", "--json")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == "error: n_embd (100) must be divisible by n_head (12), or set the head size explicitly."
