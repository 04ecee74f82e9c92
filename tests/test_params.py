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
        elif ".mlp." in name:
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
