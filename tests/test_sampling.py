"""Sampling knobs: seeded reproducibility, greedy equivalences, top-k and top-p sets."""
import pytest
import torch

from tinygpt import GPT, GPTConfig, filter_logits, generate, next_token_probs, sample_next_token


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig.from_preset("tiny")).eval()


def test_seeded_sampling_is_reproducible(model):
    x = torch.randint(0, 50257, (2, 4), generator=torch.Generator().manual_seed(0))
    a = generate(model, x, 20, temperature=1.0, generator=torch.Generator().manual_seed(42))
    b = generate(model, x, 20, temperature=1.0, generator=torch.Generator().manual_seed(42))
    c = generate(model, x, 20, temperature=1.0, generator=torch.Generator().manual_seed(43))
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_top_k_1_equals_greedy_equals_temperature_0(model):
    x = torch.randint(0, 50257, (2, 4), generator=torch.Generator().manual_seed(0))
    greedy = generate(model, x, 15, temperature=0.0)
    topk1 = generate(model, x, 15, temperature=1.3, top_k=1, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # argmax by hand, no cache
        seq = x
        for _ in range(15):
            seq = torch.cat([seq, model(seq)[0][:, -1].argmax(-1, keepdim=True)], 1)
    assert greedy.tolist() == topk1.tolist() == seq.tolist()


def test_top_p_keeps_smallest_set_reaching_p():
    probs = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    logits = probs.log()
    for p, kept in [(0.5, 1), (0.51, 2), (0.7, 2), (0.71, 3), (0.85, 3), (0.9, 4), (0.96, 5), (1.0, 5)]:
        out = next_token_probs(logits, 1.0, None, p)
        assert int((out > 0).sum()) == kept, p
        assert torch.allclose(out[:kept], probs[:kept] / probs[:kept].sum(), atol=1e-6)


def test_top_k_keeps_k_and_renormalises():
    logits = torch.randn(3, 100, generator=torch.Generator().manual_seed(0))
    out = next_token_probs(logits, 0.7, 5, None)
    assert ((out > 0).sum(-1) == 5).all()
    assert torch.allclose(out.sum(-1), torch.ones(3))
    top = logits.topk(5).indices
    assert (out.gather(-1, top) > 0).all()


def test_temperature_sharpens_and_flattens():
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    ent = lambda p: -(p * p.clamp_min(1e-30).log()).sum()  # noqa: E731
    h_low, h1, h_high = (ent(next_token_probs(logits, t)) for t in (0.1, 1.0, 10.0))
    assert h_low < h1 < h_high
    assert h_high > 0.99 * torch.log(torch.tensor(1000.0))  # T=10 is nearly uniform


def test_sample_next_token_shape_and_greedy():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    out = sample_next_token(logits, 0.0, None, None, None)
    assert out.shape == (4, 1) and out.squeeze(1).tolist() == logits.argmax(-1).tolist()
    s = sample_next_token(logits, 1.0, None, None, torch.Generator().manual_seed(0))
    assert s.shape == (4, 1)


@pytest.mark.parametrize("t,k,p", [(-0.1, None, None), (float("nan"), None, None), (1.0, 0, None),
                                   (1.0, None, 0.0), (1.0, None, 1.5)])
def test_bad_knobs_raise(t, k, p):
    with pytest.raises(ValueError):
        filter_logits(torch.zeros(5), t, k, p)


def test_generation_crops_to_block_size(model):
    x = torch.randint(0, 50257, (1, 80), generator=torch.Generator().manual_seed(0))  # > block 64
    out = generate(model, x, 5, temperature=0.0)
    assert out.shape == (1, 85)
    with torch.no_grad():
        first = model(x[:, -64:])[0][:, -1].argmax(-1).item()
    assert out[0, 80].item() == first


def test_draws_follow_the_displayed_distribution():
    """sample_next_token draws from exactly next_token_probs (checked by frequency over 40,000 draws)."""
    logits = torch.tensor([[2.0, 1.5, 0.3, -1.0, 0.9, -3.0]])
    gen = torch.Generator().manual_seed(0)
    for t, k, p in [(1.0, None, None), (0.7, 3, None), (1.3, None, 0.8), (2.0, 4, 0.9)]:
        want = next_token_probs(logits, t, k, p)[0]
        draws = torch.cat([sample_next_token(logits.expand(4000, -1), t, k, p, gen) for _ in range(10)])
        freq = torch.bincount(draws.view(-1), minlength=6).float() / draws.numel()
        assert torch.allclose(freq, want, atol=0.012), (t, k, p, freq, want)
        assert (freq[want == 0] == 0).all()  # removed tokens are never drawn
