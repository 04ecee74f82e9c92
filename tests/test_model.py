"""The model matches transformers' GPT-2, and its teaching switches (layers, mask, cache) do what they say."""
import pytest
import torch

from tinygpt import GPT, GPTConfig, generate, load_model


def test_logits_match_transformers(hf_dir):
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    model, _ = load_model(hf_dir)
    x = torch.randint(0, 50257, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(x).logits
        ours, _ = model(x)
    assert ours.shape == ref.shape == (2, 40, 50257)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=0), (ours - ref).abs().max()


def test_greedy_generation_matches_transformers(hf_dir):
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    model, _ = load_model(hf_dir)
    x = torch.randint(0, 50257, (1, 7), generator=torch.Generator().manual_seed(2))
    ref = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=30, do_sample=False,
                      pad_token_id=50256)
    ours = generate(model, x, 30, temperature=0.0)
    assert ours.tolist() == ref.tolist()


def test_loading_does_not_change_hf_checkpoint_roundtrip(hf_dir, tmp_path, tok):
    """Our save_checkpoint writes a directory transformers itself can load, with identical logits."""
    from transformers import GPT2LMHeadModel

    from tinygpt import save_checkpoint

    model, _ = load_model(hf_dir)
    save_checkpoint(model, tok, str(tmp_path))
    hf = GPT2LMHeadModel.from_pretrained(str(tmp_path)).eval()
    x = torch.randint(0, 50257, (1, 16), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(hf(x).logits, model(x)[0], atol=1e-4, rtol=0)


def test_targets_give_mean_cross_entropy():
    torch.manual_seed(0)
    m = GPT(GPTConfig.from_preset("tiny")).eval()
    x = torch.randint(0, 50257, (2, 10))
    y = torch.randint(0, 50257, (2, 10))
    logits, loss = m(x, y)
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 50257), y.reshape(-1))
    assert torch.allclose(loss, ref)


def test_layers_equal_calling_blocks_by_hand():
    torch.manual_seed(0)
    m = GPT(GPTConfig.from_preset("tiny")).eval()
    x = torch.randint(0, 50257, (1, 12))
    with torch.no_grad():
        h = m.transformer.wte(x) + m.transformer.wpe(torch.arange(12))
        for i in [2, 0]:
            h = m.transformer.h[i](h)
        ref = m.lm_head(m.transformer.ln_f(h))
        assert torch.allclose(m(x, layers=[2, 0])[0], ref, atol=1e-6)
        assert not torch.allclose(m(x, layers=[0, 2])[0], ref, atol=1e-4)  # order matters


@pytest.mark.parametrize("bad", [[], [4], [-1], ["1"], [0.5]])
def test_invalid_layers_raise_plain_message(bad):
    m = GPT(GPTConfig.from_preset("tiny"))
    with pytest.raises(ValueError) as e:
        m(torch.zeros(1, 3, dtype=torch.long), layers=bad)
    assert "block" in str(e.value).lower()


def test_causal_mask_hides_the_future_and_no_mask_does_not():
    x = torch.randint(0, 50257, (1, 10), generator=torch.Generator().manual_seed(0))
    x2 = x.clone()
    x2[0, 7] = (x[0, 7] + 1) % 50257  # change a *later* token
    for causal in (True, False):
        torch.manual_seed(0)
        m = GPT(GPTConfig.from_preset("tiny", causal=causal)).eval()
        with torch.no_grad():
            a, b = m(x)[0], m(x2)[0]
        earlier_changed = not torch.allclose(a[0, :7], b[0, :7], atol=1e-6)
        assert earlier_changed == (not causal)


def test_kv_cache_matches_full_recompute_even_past_the_context():
    torch.manual_seed(0)
    cfg = GPTConfig.from_preset("tiny", block_size=16)
    m = GPT(cfg).eval()
    x = torch.randint(0, 50257, (3, 5))
    for kw in (dict(temperature=0.0), dict(temperature=1.0, top_k=50)):
        a = generate(m, x, 30, generator=torch.Generator().manual_seed(7), use_cache=True, **kw)
        b = generate(m, x, 30, generator=torch.Generator().manual_seed(7), use_cache=False, **kw)
        assert a.shape == (3, 35)
        assert a.tolist() == b.tolist()


def test_gqa_cache_matches_recompute():
    torch.manual_seed(0)
    m = GPT(GPTConfig.from_preset("tiny", n_kv_head=2)).eval()
    x = torch.randint(0, 50257, (2, 4))
    a = generate(m, x, 12, temperature=0.0, use_cache=True)
    b = generate(m, x, 12, temperature=0.0, use_cache=False)
    assert a.tolist() == b.tolist()


def test_config_rejects_impossible_shapes():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=100, n_head=12)
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_head=12, n_kv_head=5)
    with pytest.raises(ValueError, match="positive"):
        GPTConfig(n_layer=0)
    with pytest.raises(ValueError, match="preset"):
        GPTConfig.from_preset("gpt5")


def test_three_dropouts_are_separate():
    cfg = GPTConfig.from_preset("tiny", embd_pdrop=0.1, attn_pdrop=0.2, resid_pdrop=0.3)
    m = GPT(cfg)
    assert m.transformer.drop.p == 0.1
    assert m.transformer.h[0].attn.attn_dropout == 0.2
    assert m.transformer.h[0].attn.resid_dropout.p == 0.3 and m.transformer.h[0].mlp.dropout.p == 0.3
