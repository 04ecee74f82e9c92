"""Parameter counts from the config equal the parameters of a built model (meta device for big ones)."""
import random

import pytest
import torch

from tinygpt import GPT, GPTConfig, count_parameters

EXACT = {"gpt2": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080,
         "gpt2-xl": 1_557_611_200, "gpt3": 174_604_259_328}


def built(cfg):
    with torch.device("meta"):
        m = GPT(cfg)
    return m


def by_kind(model):
    """Sum p.numel() by parameter name, independently of params.py."""
    out = {"embedding": 0, "attention": 0, "feed_forward": 0, "layer_norm": 0, "lm_head": 0}
    seen = set()
    for name, p in model.named_parameters():  # tied weights appear once
        if id(p) in seen:
            continue
        seen.add(id(p))
        if ".wte." in name or ".wpe." in name:
            out["embedding"] += p.numel()
        elif ".attn." in name:
            out["attention"] += p.numel()
        elif ".mlp." in name:  # dense MLP, or the experts and the router of an MoE layer
            out["feed_forward"] += p.numel()
        elif "ln_" in name:
            out["layer_norm"] += p.numel()
        elif name.startswith("lm_head"):
            out["lm_head"] += p.numel()
        else:
            raise AssertionError(name)
    return out


@pytest.mark.parametrize("preset", list(EXACT))
def test_presets_exact(preset):
    cfg = GPTConfig.from_preset(preset)
    counts = count_parameters(cfg)
    assert counts["total"] == EXACT[preset]
    m = built(cfg)
    assert sum(p.numel() for p in m.parameters()) == EXACT[preset]
    kinds = by_kind(m)
    for k, v in kinds.items():
        assert counts[k] == v, k
    assert counts["lm_head"] == 0


def test_random_configs_property():
    rng = random.Random(0)
    for _ in range(40):
        n_head = rng.choice([1, 2, 3, 4, 6, 8])
        n_kv = rng.choice([d for d in range(1, n_head + 1) if n_head % d == 0])
        cfg = GPTConfig(vocab_size=rng.randint(5, 3000), block_size=rng.randint(1, 300),
                        n_layer=rng.randint(1, 5), n_head=n_head, n_kv_head=rng.choice([None, n_kv]),
                        n_embd=n_head * rng.randint(1, 24), n_inner=rng.choice([None, rng.randint(1, 200)]),
                        bias=rng.random() < 0.5, tie_weights=rng.random() < 0.5, layernorm=rng.random() < 0.8)
        m = built(cfg)
        counts = count_parameters(cfg)
        assert counts["total"] == sum(p.numel() for p in m.parameters()), cfg
        for k, v in by_kind(m).items():
            assert counts[k] == v, (k, cfg)
        assert (counts["lm_head"] == 0) == cfg.tie_weights


def test_architecture_options_property():
    """Decoupled head size, GQA, gated MLP, RMSNorm, every position encoding, q/k/v-only biases, MoE: the count
    equals the built model for random combinations, and 'active' counts one token's share of an MoE."""
    rng = random.Random(7)
    for _ in range(60):
        n_head = rng.choice([1, 2, 4, 6])
        n_kv = rng.choice([d for d in range(1, n_head + 1) if n_head % d == 0])
        E = rng.choice([0, 0, 2, 4])
        d = rng.choice([8, 12, 24, 48])
        head_size = rng.choice([None, 2, 4, 16]) if d % n_head == 0 else rng.choice([2, 4, 16])
        hd = head_size or d // n_head  # RoPE needs an even head size
        cfg = GPTConfig(vocab_size=rng.randint(5, 500), block_size=rng.randint(1, 64), n_layer=rng.randint(1, 3),
                        n_head=n_head, n_kv_head=n_kv, n_embd=d, head_size=head_size, n_inner=rng.randint(4, 64),
                        bias=rng.random() < 0.5, qkv_bias=rng.choice([None, True, False]),
                        tie_weights=rng.random() < 0.5, mlp=rng.choice(["gelu", "gated"]),
                        norm=rng.choice(["layernorm", "rmsnorm"]), layernorm=rng.random() < 0.9,
                        pos_encoding=rng.choice(["learned", "sinusoidal", "none"] + ["rope"] * (hd % 2 == 0)),
                        n_experts=E, moe_top_k=rng.randint(1, E) if E else 1)
        m = built(cfg)
        counts = count_parameters(cfg)
        assert counts["total"] == sum(p.numel() for p in m.parameters()), cfg
        for k, v in by_kind(m).items():
            assert counts[k] == v, (k, cfg)
        if E:
            one_expert = sum(p.numel() for p in m.transformer.h[0].mlp.experts[0].parameters())
            assert counts["total"] - counts["active"] == cfg.n_layer * (E - cfg.moe_top_k) * one_expert
        else:
            assert counts["active"] == counts["total"]
