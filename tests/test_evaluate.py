"""The one loss primitive: token_logprobs scores every predicted token once, equal to a direct cross-entropy, and
evaluate / perplexity / the fine-tune shifts are built on it. The model's return contract and its named views
(hidden states, attention weights) agree with the forward pass."""
import math

import pytest
import torch
import torch.nn.functional as F

from tinygpt import GPT, GPTConfig, evaluate, perplexity, token_logprobs
from tinygpt.evaluate import window_starts
from tinygpt.finetune import probability_shifts, trainable_copy


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig.from_preset("tiny")).eval()


def direct_logprobs(model, ids, context):
    """Reference: one window at a time, no batching, F.cross_entropy per token."""
    out = []
    for s in range(0, len(ids) - 1, context):
        x = torch.tensor([ids[s:s + context]])
        y = torch.tensor(ids[s + 1:s + 1 + context])
        x = x[:, :len(y)]
        with torch.no_grad():
            logits, _ = model(x)
        out.append(-F.cross_entropy(logits[0], y, reduction="none"))
    return torch.cat(out)


@pytest.mark.parametrize("n,context", [(2, 8), (9, 8), (10, 8), (100, 16), (130, 64)])
def test_token_logprobs_equal_direct_cross_entropy(model, n, context):
    ids = torch.randint(0, 50257, (n,), generator=torch.Generator().manual_seed(n)).tolist()
    sc = token_logprobs(model, ids, context)
    ref = direct_logprobs(model, ids, context)
    assert sc.logprobs.shape == (n - 1,) and torch.allclose(sc.logprobs, ref, atol=1e-5)
    assert sc.targets.tolist() == ids[1:] and sc.positions.tolist() == list(range(1, n))
    assert sc.loss == pytest.approx(float(-ref.mean()), rel=1e-5)
    assert sc.perplexity == pytest.approx(math.exp(sc.loss))


def test_layers_subset_and_eval_mode_restored(model):
    ids = list(range(100, 160))
    model.train()
    a = token_logprobs(model, ids, 16, layers=[0, 2])
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids[:16]]), layers=[0, 2])
    assert a.logprobs[:16].tolist() == pytest.approx(F.log_softmax(logits[0], -1)
                                                     .gather(-1, torch.tensor(ids[1:17])[:, None])[:, 0].tolist(),
                                                     abs=1e-5)


def test_window_subset_is_fixed_and_evenly_spaced():
    assert window_starts(101, 10) == list(range(0, 100, 10))
    assert window_starts(105, 10) == list(range(0, 105, 10))  # a short tail window covers the last tokens
    assert window_starts(101, 10, max_windows=3) == [0, 40, 90]
    assert window_starts(5, 10, max_windows=3) == [0]  # no full window: the one partial window
    with pytest.raises(ValueError, match="2 tokens"):
        window_starts(1, 10)


def test_evaluate_and_perplexity_share_the_primitive(model, tok):
    text = "The river bends twice before it reaches the old mill. " * 8
    ids = tok.encode(text)
    ppl = perplexity(model, tok, text, context=32)
    ev = evaluate(model, torch.tensor(ids), 32)
    assert ppl["loss"] == pytest.approx(ev["loss"]) and ppl["tokens"] == ev["tokens"] == len(ids) - 1
    assert ev["accuracy"] == pytest.approx(float(token_logprobs(model, ids, 32).correct.float().mean()))


def test_probability_shifts_read_the_same_scores(model, tok):
    ids = torch.tensor(tok.encode("to be or not to be, that is the question. " * 10))
    tuned = trainable_copy(model, "top:1")
    with torch.no_grad():
        tuned.transformer.h[3].mlp.c_proj.weight.add_(0.05)
    rows = probability_shifts(model, tuned, tok, ids, 32, top=50, min_count=1)
    a, b = token_logprobs(model, ids, 32), token_logprobs(tuned, ids, 32)
    piece = tok.piece(int(ids[1]))
    row = next(r for r in rows if r["token"] == piece)
    mask = a.targets == ids[1]
    assert row["count"] == int(mask.sum())
    assert row["mean_logprob_gain"] == pytest.approx(float((b.logprobs - a.logprobs)[mask].mean()), abs=1e-5)


def test_forward_contract_and_named_views(model):
    x = torch.randint(0, 50257, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, loss = model(x)
        assert loss is None and logits.shape == (2, 12, 50257)
        last, _ = model(x, last_only=True)
        assert torch.allclose(last[:, 0], logits[:, -1], atol=1e-5)
        hidden = model.hidden_states(x)
        assert len(hidden) == model.config.n_layer + 1
        assert torch.allclose(model.logits(hidden[-1]), logits, atol=1e-5)
        attn = model.attention_weights(x, layers=[1, 3])
    assert len(attn) == 2 and attn[0].shape == (2, 4, 12, 12)
    assert torch.allclose(attn[0].sum(-1), torch.ones(2, 4, 12), atol=1e-5)
    assert float(attn[0].triu(1).abs().max()) == 0.0  # causal: nothing above the diagonal
