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
from tabs.kit.common import human, human_bytes
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


# ---- any architecture, any Hugging Face config.json (issue: the calculator for any model) ----------------------
def arch_config(rng):
    """A random config using every architecture option (decoupled head size, GQA, gated MLP, RMSNorm, positions,
    q/k/v biases, tied or not, Mixture-of-Experts)."""
    n_head = rng.choice([1, 2, 4, 6])
    E = rng.choice([0, 0, 2, 4])
    d = rng.choice([8, 12, 24, 48])
    head_size = rng.choice([None, 2, 4, 16]) if d % n_head == 0 else rng.choice([2, 4, 16])
    return GPTConfig(vocab_size=rng.randint(5, 500), block_size=rng.randint(2, 32), n_layer=rng.randint(1, 3),
                     n_head=n_head, n_kv_head=rng.choice([k for k in range(1, n_head + 1) if n_head % k == 0]),
                     n_embd=d, head_size=head_size, n_inner=rng.randint(4, 64), bias=rng.random() < 0.5,
                     qkv_bias=rng.choice([None, True, False]), tie_weights=rng.random() < 0.5,
                     mlp=rng.choice(["gelu", "gated"]), norm=rng.choice(["layernorm", "rmsnorm"]),
                     layernorm=rng.random() < 0.9, pos_encoding=rng.choice(["learned", "sinusoidal", "none", "rope"])
                     if (head_size or d // n_head) % 2 == 0 else "learned",
                     n_experts=E, moe_top_k=rng.randint(1, E) if E else 1)


def test_parameter_tensors_for_every_architecture_option():
    rng = random.Random(99)
    for _ in range(60):
        cfg = arch_config(rng)
        assert parameter_tensors(cfg) == len(list(meta_model(cfg).parameters())), cfg
        r = estimate(cfg)
        assert r["params"]["total"] == sum(p.numel() for p in meta_model(cfg).parameters())
        rows = calculator.breakdown_rows(cfg, r)
        assert [row for row in rows if row[0] == "TOTAL (exact)"][0][2] == f"{r['params']['total']:,}"


@pytest.mark.parametrize("options", [
    dict(mlp="gated", norm="rmsnorm", bias=False, tie_weights=False, pos_encoding="rope", head_size=12, n_kv_head=2),
    dict(bias=False, qkv_bias=True, norm="rmsnorm", mlp="gated", pos_encoding="none"),
    dict(n_experts=4, moe_top_k=2, mlp="gated", bias=False, norm="rmsnorm"),
])
def test_adamw_memory_equals_torch_allocation_for_llama_style_models(options):
    cfg = GPTConfig(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=97, n_inner=40, **options)
    real = one_step(cfg, lambda p: torch.optim.AdamW(p, lr=1e-3))
    est = training_memory(cfg, batch_size=2, seq_len=16, dtype="fp32", optimizer="adamw")
    for k in ("weights", "gradients", "optimizer"):
        assert est[k] == real[k], k
    P = count_parameters(cfg)["total"]  # MoE: every expert is stored, trained and has optimizer state
    assert est["weights"] + est["gradients"] + est["optimizer"] == 16 * P + 4 * parameter_tensors(cfg)


def test_flops_agree_with_flop_counter_for_gated_decoupled_moe(monkeypatch):
    """Decoupled heads (A = 3·16 = 48 ≠ d = 32), GQA, a gated MLP and top-2 of 4 experts: the matmuls a token runs
    are 2·N FLOPs with N the ACTIVE parameters, and the attention term uses A, not d."""
    monkeypatch.setattr(F, "scaled_dot_product_attention", math_sdpa)
    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=2, n_head=3, n_kv_head=1, n_embd=32, head_size=16, block_size=32, vocab_size=512,
                    n_inner=48, mlp="gated", norm="rmsnorm", pos_encoding="rope", bias=False, tie_weights=False,
                    n_experts=4, moe_top_k=2)
    model = GPT(cfg)
    B, T = 2, 32
    x = torch.randint(0, cfg.vocab_size, (B, T))
    est = flops_per_token(cfg, T)
    counts = count_parameters(cfg)
    assert est["compute_params"] == counts["active"] - counts["embedding"]  # untied: active incl. the LM head
    assert est["attention_forward"] == 2 * cfg.n_layer * T * cfg.attn_dim
    _, by_op = counted(lambda: model(x))
    assert by_op["aten.bmm"] == 2 * est["attention_forward"] * B * T  # full square = 2 × the causal half
    matmul_weights = est["compute_params"] - counts["layer_norm"]  # no biases: N is matmul weights + norm weights
    assert by_op["aten.mm"] + by_op.get("aten.addmm", 0) == 2 * matmul_weights * B * T


def test_activation_formula_generalises_the_paper():
    s, b = 64, 2
    base = GPTConfig(n_layer=2, n_head=4, n_embd=64, block_size=64, n_inner=96)
    act = lambda cfg: activation_bytes(cfg, b, s, "bf16")["per_layer"]  # noqa: E731
    e, ff = 2, 96
    assert act(base.replace(mlp="gated")) - act(base) == 2 * e * s * b * ff  # c_gate output, product
    # head 16 -> 32 doubles A (Q, out-projection input) and kv (K, V): 64 -> 128 each
    assert act(base.replace(head_size=32)) - act(base) == e * s * b * (2 * (128 - 64) + 2 * (128 - 64))
    moe = base.replace(n_experts=4, moe_top_k=2)
    assert act(moe) - act(base) == e * s * b * 2 * ff + 4 * s * b * 4  # one more expert's FFN + fp32 router probs
    assert act(base.replace(norm="rmsnorm", bias=False)) == act(base)  # a norm keeps its input either way


def test_gpt3_table_2_1_presets_are_the_paper_shapes():
    # Brown et al. 2020, Table 2.1: name, n_params label, n_layers, d_model, n_heads, d_head
    table = [("gpt3-small", 125e6, 12, 768, 12, 64), ("gpt3-medium", 350e6, 24, 1024, 16, 64),
             ("gpt3-large", 760e6, 24, 1536, 16, 96), ("gpt3-xl", 1.3e9, 24, 2048, 24, 128),
             ("gpt3-2.7b", 2.7e9, 32, 2560, 32, 80), ("gpt3-6.7b", 6.7e9, 32, 4096, 32, 128),
             ("gpt3-13b", 13e9, 40, 5140, 40, 128), ("gpt3-175b", 175e9, 96, 12288, 96, 128)]
    for name, label, L, d, h, dh in table:
        cfg = GPTConfig.from_preset(name)
        assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.head_dim) == (L, d, h, dh), name
        assert (cfg.block_size, cfg.vocab_size, cfg.ffn_dim) == (2048, 50257, 4 * d), name
        total = count_parameters(cfg)["total"]
        assert total == sum(p.numel() for p in meta_model(cfg).parameters())
        if name != "gpt3-xl":
            assert abs(total - label) / label < 0.02, name
    # XL as printed (24 heads x 128 = 3072-wide attention) has 1.52B; its "1.3B" label fits a 2048-wide attention
    assert count_parameters(GPTConfig.from_preset("gpt3-xl"))["total"] == 1_517_123_584
    assert count_parameters(GPTConfig.from_preset("gpt3-xl", n_head=16))["total"] == 1_315_723_264  # 16 x 128
    assert count_parameters(GPTConfig.from_preset("gpt3-175b")) == count_parameters(GPTConfig.from_preset("gpt3"))
    assert count_parameters(GPTConfig.from_preset("gpt3-small"))["total"] == 125_226_240  # the 125.2M


def test_llama_mistral_llama3_presets_exact():
    want = {"llama-7b": 6_738_415_616, "mistral-7b": 7_241_732_096, "llama3-8b": 8_030_261_248,
            "mixtral-8x7b": 46_702_792_704}
    for name, total in want.items():
        assert count_parameters(GPTConfig.from_preset(name))["total"] == total, name
    assert count_parameters(GPTConfig.from_preset("mixtral-8x7b"))["active"] == 12_879_925_248


def write_config(tmp_path, d):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(d))
    return str(path)


def test_must_show_llama_7b_config_json(tmp_path, capsys):
    from test_hf_config import LLAMA_7B

    assert cli_main(["params", "--config", write_config(tmp_path, LLAMA_7B), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["params"]["total"] == 6_738_415_616
    assert d["source"]["model_type"] == "llama" and d["config"]["mlp"] == "gated" and not d["config"]["tie_weights"]


def test_must_show_mistral_7b_config_json_and_kv_cache(tmp_path):
    from test_hf_config import MISTRAL_7B

    r = run_cli("params", "--config", write_config(tmp_path, MISTRAL_7B), "--seq-len", "4096", "--batch-size", "1",
                "--dtype", "fp16", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["params"]["total"] == 7_241_732_096
    assert d["kv_cache_bytes"] == 536_870_912 == 2 * 32 * 4096 * 8 * 128 * 2
    assert d["config"]["n_kv_head"] == 8 and d["config"]["head_dim"] == 128
    assert any("sliding_window" in n for n in d["source"]["notes"])


def test_must_show_fp32_adamw_is_16_bytes_per_parameter(capsys):
    assert cli_main(["params", "--preset", "llama-7b", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    P, m, bpp = d["params"]["total"], d["memory_bytes"], d["bytes_per_param"]
    assert bpp["weights"] + bpp["gradients"] + bpp["optimizer"] == 16
    assert m["weights"] + m["gradients"] + m["optimizer"] == 16 * P + 4 * parameter_tensors(
        GPTConfig.from_preset("llama-7b"))  # + one fp32 step counter per tensor (291 tensors: 1,164 B)


def test_must_show_gpt3_xl_with_decoupled_head_dim():
    r = run_cli("params", "--n-head", "24", "--head-dim", "128", "--n-embd", "2048", "--n-layer", "24",
                "--block-size", "2048", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    cfg = GPTConfig(n_layer=24, n_head=24, head_size=128, n_embd=2048, block_size=2048)
    m = meta_model(cfg)
    assert m.transformer.h[0].attn.c_proj.weight.shape == (2048, 3072)  # that attention width, really built
    assert d["params"]["total"] == sum(p.numel() for p in m.parameters()) == 1_517_123_584
    assert (d["config"]["head_dim"], d["config"]["attn_dim"]) == (128, 3072)
    assert d["flops"]["attention_forward"] == 2 * 24 * 2048 * 3072
    assert d["params"] == count_parameters(GPTConfig.from_preset("gpt3-xl"))


def test_cli_architecture_flags_match_built_model():
    r = run_cli("params", "--n-layer", "2", "--n-embd", "32", "--n-head", "4", "--n-kv-head", "2", "--head-dim",
                "12", "--n-inner", "40", "--mlp", "gated", "--norm", "rmsnorm", "--pos-encoding", "rope",
                "--no-bias", "--qkv-bias", "--untied", "--n-experts", "4", "--moe-top-k", "2", "--block-size", "16",
                "--vocab-size", "97", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    cfg = GPTConfig(n_layer=2, n_embd=32, n_head=4, n_kv_head=2, head_size=12, n_inner=40, mlp="gated",
                    norm="rmsnorm", pos_encoding="rope", bias=False, qkv_bias=True, tie_weights=False, n_experts=4,
                    moe_top_k=2, block_size=16, vocab_size=97)
    assert d["params"] == count_parameters(cfg)
    assert d["params"]["total"] == sum(p.numel() for p in meta_model(cfg).parameters())
    assert d["params"]["active"] < d["params"]["total"]
    assert d["formulas"]["params_active"].startswith("total − L·(E − k)")


@pytest.mark.parametrize("args,match", [
    (["--config", "CONFIG", "--preset", "gpt2"], "use one of --preset, --config"),
    (["--config", "MISSING"], "missing the field intermediate_size"),
    (["--config", "FALCON"], "Unsupported architecture 'falcon'"),
    (["--config", "NOWHERE"], "No config.json"),
    (["--ffn-mult", "3", "--n-inner", "100"], "use one of --ffn-mult, --n-inner"),
    (["--head-dim", "0"], "head_size must be a positive"),
    (["--n-experts", "4", "--moe-top-k", "5"], "moe_top_k must be between"),
    (["--hub-id", "not a/valid id"], "org/name"),
])
def test_cli_config_errors_are_one_line(args, match, tmp_path, capsys):
    from test_hf_config import LLAMA_7B

    files = {"CONFIG": LLAMA_7B, "MISSING": {**LLAMA_7B, "intermediate_size": None},
             "FALCON": {**LLAMA_7B, "model_type": "falcon"}}
    argv = []
    for a in args:
        if a in files:
            (tmp_path / a).mkdir()
            a = write_config(tmp_path / a, files[a])
        argv.append(str(tmp_path / "nowhere") if a == "NOWHERE" else a)
    assert cli_main(["params", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and match in err and "\n" not in err, err


# ---- the tab with the architecture options and config.json ---------------------------------------------------
def test_handler_with_16_inputs_is_gpt2_as_before():
    v = calculator.preset_values("gpt2")
    old = calculator.on_params(*v[:9], "fp32", "adamw", 1, 1024, 1e12, 312, 0.4)
    new = calculator.on_params(*v[:9], "fp32", "adamw", 1, 1024, 1e12, 312, 0.4, *calculator.ARCH_DEFAULTS)
    assert old[-1] == new[-1] and old[0] == new[0]
    assert old[-1]["params"]["total"] == 124_439_808


@pytest.mark.parametrize("preset", ["llama-7b", "mistral-7b", "llama3-8b", "mixtral-8x7b", "gpt3-xl", "gpt3-13b"])
def test_handler_every_preset_equals_estimate(preset):
    v = calculator.preset_values(preset)
    md, rows, mem, kv, js = calculator.on_params(*v[:9], "bf16", "adamw", 1, v[9], 1e12, 312, 0.4, *v[10:])
    cfg = GPTConfig.from_preset(preset)
    assert js == calculator.json_safe(estimate(cfg, seq_len=cfg.block_size, dtype="bf16"))
    assert f"{js['params']['total']:,}" in md
    if cfg.n_experts:
        assert "total vs active" in md and f"{js['params']['active']:,}" in md
        assert [r for r in rows if r[0].startswith("ACTIVE")][0][2] == f"{js['params']['active']:,}"


def test_config_json_paste_and_upload_fill_the_form(tmp_path):
    from test_hf_config import GEMMA_7B, MISTRAL_7B

    values = calculator.on_config_json(json.dumps(MISTRAL_7B))
    *form, status = values
    assert "mistral" in status and "sliding_window" in status
    cfg = calculator.make_config(*form[:9], *form[10:])
    assert count_parameters(cfg)["total"] == 7_241_732_096 and form[9] == 32768
    js = calculator.on_params(*form[:9], "fp16", "adamw", 1, 4096, 1e12, 312, 0.4, *form[10:])[-1]
    assert js["kv_cache_bytes"] == 536_870_912
    *form, status = calculator.on_config_json("", write_config(tmp_path, GEMMA_7B))  # the upload wins
    assert form[10] == 256 and count_parameters(calculator.make_config(*form[:9], *form[10:]))["total"] == \
        8_537_680_896
    for text, match in (("", "Paste"), ("{oops", "not valid JSON"), ('{"model_type": "bert"}', "Unsupported"),
                        ('{"model_type": "llama", "hidden_size": 64}', "missing the field")):
        with pytest.raises(gr.Error, match=match):
            calculator.on_config_json(text)


def test_hub_id_handler_uses_the_given_fetch_and_says_offline_in_one_sentence():
    from test_hf_config import LLAMA3_8B

    asked = []

    def fake(hub_id):
        asked.append(hub_id)
        return LLAMA3_8B
    *form, status = calculator.on_hub_id(fake, "  meta-llama/Meta-Llama-3-8B ")
    assert asked == ["meta-llama/Meta-Llama-3-8B"] and "meta-llama/Meta-Llama-3-8B" in status
    assert count_parameters(calculator.make_config(*form[:9], *form[10:]))["total"] == 8_030_261_248

    def offline(hub_id):
        raise ConnectionError("Offline: the config.json of x/y could not be fetched (timed out); give it instead.")
    with pytest.raises(gr.Error, match="Offline"):
        calculator.on_hub_id(offline, "x/y")
    with pytest.raises(gr.Error, match="org/name"):
        calculator.on_hub_id(calculator.fetch_hub_config, "not valid!")


def test_tab_exposes_params_and_hub_api():
    with gr.Blocks() as demo:
        with gr.Tabs():
            calculator.build(fetch_config=lambda hub_id: {})
    names = {f.api_name: f.api_visibility for f in demo.fns.values()}
    assert names["params"] == "public" and names["params_from_hub"] == "public"
    fn = next(f for f in demo.fns.values() if f.api_name == "params")
    assert len(fn.inputs) == 16 + 7  # the 16 original inputs first, the architecture options after them


@pytest.mark.parametrize("arch,match", [
    ((-4, "gelu", "layernorm", "learned", "auto", 0, 1), "head_dim must be a positive"),
    ((0, "gelu", "layernorm", "rope", "auto", 0, 1), None),  # 0 = n_embd / n_head (a browser's empty box)
    ((100, "gelu", "layernorm", "learned", "auto", 0, 1), None),  # decoupled: A = 1200 ≠ d = 768
    ((0, "swish", "layernorm", "learned", "auto", 0, 1), "mlp must be one of"),
    ((0, "gated", "rmsnorm", "learned", "sometimes", 0, 1), "q/k/v biases"),
    ((0, "gated", "rmsnorm", "learned", "auto", 1, 1), "n_experts must be 0"),
    ((0, "gated", "rmsnorm", "learned", "auto", 4, 5), "moe_top_k must be between"),
    ((0, "gated", "rmsnorm", "learned", "auto", 4, 2.5), "whole number"),
])
def test_handler_architecture_inputs(arch, match):
    v = calculator.preset_values("gpt2")
    call = lambda: calculator.on_params(*v[:9], "fp32", "adamw", 1, 64, 1e12, 312, 0.4, *arch)  # noqa: E731
    if match:
        with pytest.raises(gr.Error, match=match):
            call()
        return
    js = call()[-1]
    cfg = GPTConfig(head_size=arch[0] or None, pos_encoding=arch[3])
    assert js["params"]["total"] == sum(p.numel() for p in meta_model(cfg).parameters())


# ---- the KV-cache chart follows the shape; course-map links open the shape they name (issue 20) -------------------
@pytest.mark.parametrize("preset,changes", [("gpt2", {}), ("gpt3", {}), ("gpt2-xl", {}), ("llama-7b", {}),
                                            ("gpt2", {"n_head": 8, "n_kv_head": 2}), ("mistral-7b", {}),
                                            ("tiny-shakespeare", {})])
def test_kv_chart_data_is_kv_cache_bytes_for_the_shape_shown(preset, changes):
    cfg = GPTConfig.from_preset(preset, **changes)
    v = calculator.form_values(cfg)
    seq = min(4096, cfg.block_size)
    md, rows, mem, kv, js = calculator.on_view(*v[:9], "fp16", "adamw", 2, seq, 1e12, 312, 0.4, *v[10:])
    frame = kv["value"]  # the update the page gets: its data and a colour per legend label of this shape
    labels = list(dict.fromkeys(frame["attention"]))
    assert labels == [label for label, _ in calculator.kv_lines(cfg)] and set(kv["color_map"]) == set(labels)
    assert labels[0] == f"MHA ({cfg.n_head} KV heads)" and labels[-1] == "MQA (1 KV head)"
    heads = dict(calculator.kv_lines(cfg))
    for row in frame.itertuples(index=False):
        assert row.GiB * 2 ** 30 == pytest.approx(kv_cache_bytes(cfg, 2, row[0], "fp16", heads[row.attention]),
                                                  rel=1e-12)
    tops = frame.groupby("attention")["GiB"].max()
    assert tops[labels[0]] == frame["GiB"].max()  # the MHA line reaches the top of the axis
    assert tops[labels[0]] * 2 ** 30 == kv_cache_bytes(cfg, 2, cfg.block_size, "fp16", cfg.n_head)


def test_kv_chart_gqa_row_contrasts_72_and_18_mib():
    cfg = GPTConfig.from_preset("gpt2", n_head=8, n_kv_head=2)
    tops = calculator.kv_frame(cfg, estimate(cfg)).groupby("attention")["GiB"].max() * 1024
    assert dict(tops) == {"MHA (8 KV heads)": 72.0, "GQA (2 KV heads)": 18.0, "MQA (1 KV head)": 9.0}


def calculator_tab():
    from tabs.kit import registry

    with gr.Blocks():
        registry.header()
        calculator.build()
        reg = registry.install()
    return reg, reg.tabs["calculator"]


def open_link(reg, t, settings):
    """A course-map row's link through the registry: the field values the page gets, then the refresh."""
    from urllib.parse import parse_qsl

    from tabs.kit.links import settings_query

    tab, values, notes, _ = reg.parse(dict(parse_qsl(settings_query("calculator", settings))))
    assert tab == "calculator" and notes == []
    full = {**t.defaults, **values}
    return full, calculator.on_link_view(*full.values())


def test_7b_rows_open_llama_7b_and_the_headline_is_the_answer():
    from tabs.coursemap import ENTRIES
    from tabs.kit.common import human_flops

    reg, t = calculator_tab()
    rows = [e for e in ENTRIES if e.tab == "calculator" and "7B" in e.question]
    assert len(rows) == 2
    for e in rows:
        full, (md, table, mem, kv, js, preset, source) = open_link(reg, t, e.settings)
        cfg = calculator.make_config(*[full[k] for k in list(full)[:9]],
                                     *[full[k] for k in calculator.SHARE_ARCH])
        assert count_parameters(cfg)["total"] == 6_738_415_616
        assert (cfg.mlp, cfg.norm, cfg.pos_encoding, cfg.tie_weights) == ("gated", "rmsnorm", "rope", False)
        assert preset == "llama-7b" and "llama-7b" in source
        r = estimate(cfg, batch_size=1, seq_len=4096, dtype="fp16", tokens=10 ** 12, tflops=312, mfu=0.4)
        assert js == calculator.json_safe(r)
        head = md.split("\n")[:2]  # the heading and the line under it answer both questions
        assert "6,738,415,616" in head[0]
        assert human_flops(r["flops"]["train_total"]) in head[1] and f"{r['gpu_hours']:,.0f} GPU-hours" in head[1]
        assert f"**{r['gpu_hours_at_full_utilisation']:,.0f}** at 100%" in head[1]
        assert human_bytes(r["kv_cache_bytes"]) in head[1] and r["kv_cache_bytes"] == 2 ** 31  # 2 GiB


@pytest.mark.parametrize("n_layer,expected", [(96, "gpt3"), (48, "gpt2-xl"), (12, "gpt2")])
def test_preset_box_names_the_shape_a_link_opens(n_layer, expected):
    from tabs.coursemap import ENTRIES

    reg, t = calculator_tab()
    e = next(e for e in ENTRIES if e.tab == "calculator" and e.settings.get("n_layer") == n_layer)
    full, out = open_link(reg, t, e.settings)
    assert out[5] == expected and expected in [v for _, v in calculator.PRESET_CHOICES]  # a value the box offers
    gqa = next(e for e in ENTRIES if e.tab == "calculator" and e.settings.get("n_kv_head") == 2)
    assert open_link(reg, t, gqa.settings)[1][5] == calculator.CUSTOM


def test_preset_box_matches_every_preset_and_custom():
    for _, name in calculator.PRESET_TITLES:
        if name in ("gpt3-175b",):
            continue
        assert calculator.matching_preset(*calculator.preset_values(name)) in (name, "gpt3"), name
    v = list(calculator.preset_values("gpt2"))
    v[0] = 7
    assert calculator.matching_preset(*v) == calculator.CUSTOM
    v[1] = 100  # not divisible by 12 heads: invalid, so not a preset either
    assert calculator.matching_preset(*v) == calculator.CUSTOM
    assert calculator.on_preset_name(*calculator.preset_values("llama-7b")) == "llama-7b"
    skipped = calculator.on_preset(calculator.CUSTOM)  # choosing "custom" keeps the fields
    assert len(skipped) == len(calculator.preset_values("gpt2")) + 1 and "custom" in skipped[-1].lower()


def test_kv_chart_is_drawn_afresh_when_its_legend_changes():
    """The browser keeps a native plot's first legend: a calculation with other head counts hides the chart
    first (kv_hide) and shows it with the new data (kv_plot); the same legend is updated in place."""
    v = calculator.preset_values("gpt2")
    run = ("fp32", "adamw", 1, v[9], 1e12, 312, 0.4)
    inputs = [*v[:9], *run, *v[10:]]
    drawn = gr.LinePlot(x="sequence length", y="GiB", color="attention").postprocess(
        calculator.on_params(*inputs)[3])
    assert calculator.shown_labels(drawn) == ["MHA (12 KV heads)", "GQA (3 KV heads)", "MQA (1 KV head)"]
    assert calculator.shown_labels(drawn.model_dump()) == calculator.shown_labels(drawn)
    assert calculator.kv_hide(drawn, *inputs) == gr.skip()  # same legend: no flicker
    gqa = list(inputs)
    gqa[2], gqa[3] = 8, 2
    assert calculator.kv_hide(drawn, *gqa) == gr.update(visible=False)
    assert calculator.on_view(*gqa)[3]["visible"] is True
    reg, t = calculator_tab()
    assert len(t.remount) == 1 and t.remount[0].elem_id == "calc-kv"
    outs = reg.apply_outputs()
    by = dict(zip(map(id, outs), reg.updates("calculator", {"n_head": 8, "n_kv_head": 2}, [], None)))
    assert by[id(t.remount[0])] == gr.update(visible=False)  # the link hides it; the refresh shows it again
    bad = {**t.defaults, "n_head": 7}
    out = calculator.on_link_view(*bad.values())
    assert "divisible" in out[0] and out[3] == gr.update(visible=True)
