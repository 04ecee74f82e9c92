"""The oneDNN inference path: same logits and tokens as F.linear, weights untouched, training unaffected."""
import copy
import io

import pytest
import torch
from torch import nn

import tinygpt
from tinygpt import GPT, GPTConfig
from tinygpt import kernels as fastpath
from tinygpt.efficiency import (
    FastLinear,
    disable_fast_inference,
    enable_fast_inference,
)

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN not built in")


def logits_of(model, idx):
    out = model(idx)
    return out[0] if isinstance(out, tuple) else out


def tiny(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig.from_preset("tiny")).eval()


def gpt2_like(seed=0):
    """GPT-2's widths (768, 12 heads, 3072 MLP) with 2 blocks and a small vocabulary."""
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=500, block_size=64, n_layer=2, n_head=12, n_embd=768)).eval()


def state_bytes(model):
    return {k: v.detach().clone().contiguous().view(torch.uint8) for k, v in model.state_dict().items()}


@pytest.fixture
def op_calls(monkeypatch):
    """Counts calls of the oneDNN op (and still runs it)."""
    real = torch.ops.mkldnn._linear_pointwise
    calls = []

    def spy(*args):
        calls.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", spy)
    return calls


@needs_onednn
@pytest.mark.parametrize("make", [tiny, gpt2_like])
@pytest.mark.parametrize("packed", [False, True])
def test_logits_match_standard_path(make, packed, op_calls):
    model = make()
    idx = torch.randint(0, model.config.vocab_size, (3, 9), generator=torch.Generator().manual_seed(1))
    step = idx[:, -1:]
    with torch.inference_mode():
        ref, ref_step = logits_of(model, idx), logits_of(model, step)
    report = enable_fast_inference(model, packed=packed)
    assert report["enabled"] and report["path"] == ("onednn-packed" if packed else "onednn-dense")
    assert report["max_abs_diff"] <= 1e-4 and report["layers"] == 4 * model.config.n_layer + 1
    assert all(type(m) is FastLinear for m in [model.lm_head, model.transformer.h[0].mlp.c_fc])
    n_checks = len(op_calls)
    for ctx in (torch.inference_mode, torch.no_grad):
        with ctx():
            fast, fast_step = logits_of(model, idx), logits_of(model, step)
        assert (fast - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())
        assert (fast_step - ref_step).abs().max().item() <= 1e-4 * max(1.0, ref_step.abs().max().item())
    assert len(op_calls) - n_checks == 2 * 2 * report["layers"]  # every Linear went through oneDNN


@needs_onednn
@pytest.mark.parametrize("packed", [False, True])
def test_greedy_generation_same_tokens(packed):
    model = gpt2_like()
    prompt = torch.randint(0, 500, (3, 5), generator=torch.Generator().manual_seed(2))
    ref = tinygpt.generate(model, prompt, 20, temperature=0)
    assert enable_fast_inference(model, packed=packed)["enabled"]
    assert torch.equal(tinygpt.generate(model, prompt, 20, temperature=0), ref)


@pytest.mark.parametrize("packed", [False, True])
def test_state_dict_and_tied_weights_untouched(packed):
    model = tiny()
    before = state_bytes(model)
    keys = list(model.state_dict())
    enable_fast_inference(model, packed=packed)
    with torch.inference_mode():
        logits_of(model, torch.zeros(2, 4, dtype=torch.long))  # builds packed copies when packed
    after = state_bytes(model)
    assert list(model.state_dict()) == keys
    assert all(torch.equal(before[k], after[k]) for k in keys)
    assert model.lm_head.weight is model.transformer.wte.weight
    clone = copy.deepcopy(model)
    assert clone.lm_head.weight is clone.transformer.wte.weight
    buf = io.BytesIO()
    torch.save(model, buf)  # no opaque oneDNN tensor in the pickled state
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_grad_enabled_uses_standard_path(op_calls):
    model = tiny()
    enable_fast_inference(model, packed=True)
    n = len(op_calls)
    with torch.enable_grad():
        loss = logits_of(model, torch.zeros(2, 4, dtype=torch.long)).square().mean()
        loss.backward()
    assert len(op_calls) == n  # oneDNN op never called
    assert model.transformer.h[0].attn.c_attn.weight.grad is not None
    assert model.transformer.h[0].attn.c_attn.weight.grad.abs().sum().item() > 0


@needs_onednn
@pytest.mark.parametrize("packed", [False, True])
def test_training_a_copy_then_fast_path_sees_new_weights(packed):
    model = tiny()
    assert enable_fast_inference(model, packed=packed)["enabled"]
    idx = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        logits_of(model, idx[:, :1])  # fill the packed cache with the old weights
    trained = copy.deepcopy(model)
    with torch.inference_mode():
        logits_of(trained, idx[:, :1])  # the copy packs its own weights
    trained.train()
    before = trained.lm_head.weight.detach().clone()
    opt = torch.optim.AdamW(trained.parameters(), lr=1e-2)
    for _ in range(3):
        out = trained(idx[:, :-1], targets=idx[:, 1:])
        opt.zero_grad()
        out[1].backward()
        opt.step()
    assert not torch.equal(trained.lm_head.weight, before)
    assert torch.equal(model.lm_head.weight, before)  # the original is untouched
    # the same in place on the original: its packed copies are now stale and must be rebuilt
    model.load_state_dict(trained.state_dict())
    trained.eval()
    with torch.inference_mode():
        for m in (trained, model):
            fast = logits_of(m, idx[:, :1])
            reference = copy.deepcopy(m)
            disable_fast_inference(reference)
            ref = logits_of(reference, idx[:, :1])
            assert (fast - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())


def test_fallback_when_op_raises(monkeypatch):
    def broken(*args):
        raise RuntimeError("no oneDNN here")

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", broken)
    model = tiny()
    idx = torch.zeros(1, 3, dtype=torch.long)
    with torch.inference_mode():
        ref = logits_of(model, idx)
    report = enable_fast_inference(model)
    assert not report["enabled"] and report["path"] == "standard"
    assert "unavailable" in report["reason"] and "no oneDNN here" in report["reason"]
    assert type(model.lm_head) is nn.Linear
    with torch.inference_mode():
        assert torch.equal(logits_of(model, idx), ref)


def test_fallback_when_op_is_wrong(monkeypatch):
    real = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *a: real(*a) * 1.01 + 1.0)
    report = enable_fast_inference(tiny())
    assert not report["enabled"] and "differs" in report["reason"] and report["max_abs_diff"] > 1e-4


def test_bf16_model_stays_on_standard_path(op_calls):
    model = tiny().to(torch.bfloat16)
    idx = torch.zeros(1, 3, dtype=torch.long)
    with torch.inference_mode():
        ref = logits_of(model, idx)
    enable_fast_inference(model)
    n = len(op_calls)
    with torch.inference_mode():
        assert torch.equal(logits_of(model, idx), ref)
    assert len(op_calls) == n


def test_disable_restores_plain_linear():
    model = tiny()
    enable_fast_inference(model, packed=True)
    assert disable_fast_inference(model) == 4 * model.config.n_layer + 1
    assert all(type(m) is nn.Linear for m in model.modules() if isinstance(m, nn.Linear))
    assert fastpath.enable_fast_inference(nn.Sequential(nn.ReLU()))["reason"] == "The model has no nn.Linear layers."
    with pytest.raises(ValueError, match="needs a torch.nn.Module"):
        enable_fast_inference("gpt2")


# ---- load_model integration: on by default for fp32, checked once, off on request, training unaffected ----------
def linear_types(model):
    return {type(m) for m in model.modules() if isinstance(m, nn.Linear)}


@needs_onednn
def test_load_model_takes_fast_path_with_same_weights_and_logits(tiny_dir, tok, tmp_path):
    from conftest import state_checksum

    from tabs.kit.common import model_card

    fast, _ = tinygpt.load_model(tiny_dir)
    plain, _ = tinygpt.load_model(tiny_dir, fast_path=False)
    report = fast.info.fast_path
    assert report["enabled"] and report["path"] == "onednn-dense" and report["max_abs_diff"] <= 1e-4
    assert linear_types(fast) == {FastLinear} and linear_types(plain) == {nn.Linear}
    assert plain.info.fast_path == {} and fastpath.fast_inference_path(plain) == "standard"
    assert "oneDNN" in model_card(fast) and "oneDNN" not in model_card(plain)
    assert not any(p.requires_grad for p in fast.parameters())  # still read-only
    assert fast.lm_head.weight is fast.transformer.wte.weight
    sd_fast, sd_plain = fast.state_dict(), plain.state_dict()
    assert list(sd_fast) == list(sd_plain) and all(torch.equal(sd_fast[k], sd_plain[k]) for k in sd_plain)
    assert state_checksum(fast) == state_checksum(plain)
    idx = torch.randint(0, 50257, (3, 10), generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        a, b = fast(idx)[0], plain(idx)[0]
    assert (a - b).abs().max().item() <= 1e-4 * max(1.0, b.abs().max().item())
    # checkpoint saving: the saved weights are the loaded ones, byte for byte
    tinygpt.save_checkpoint(fast, tok, str(tmp_path / "saved"))
    again, _ = tinygpt.load_model(str(tmp_path / "saved"))
    assert state_checksum(again) == state_checksum(plain) and linear_types(again) == {FastLinear}


@pytest.mark.parametrize("env, path", [("0", "standard"), ("off", "standard"), ("packed", "onednn-packed"),
                                       ("1", "onednn-dense")])
def test_env_variable_chooses_the_path(monkeypatch, tiny_dir, env, path):
    if path != "standard" and not torch.backends.mkldnn.is_available():
        pytest.skip("oneDNN not built in")
    monkeypatch.setenv("TINYGPT_FASTPATH", env)
    model, _ = tinygpt.load_model(tiny_dir)
    assert fastpath.fast_inference_path(model) == path
    assert (model.info.fast_path == {}) == (path == "standard")


def test_load_falls_back_silently_when_onednn_is_unavailable(monkeypatch, tiny_dir):
    def broken(*args):
        raise RuntimeError("no oneDNN here")

    plain, _ = tinygpt.load_model(tiny_dir, fast_path=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", broken)
    model, _ = tinygpt.load_model(tiny_dir)  # no exception, no warning: the standard path
    assert linear_types(model) == {nn.Linear} and not model.info.fast_path["enabled"]
    assert model.info.notice == "" and fastpath.fast_inference_path(model) == "standard"
    idx = torch.zeros(2, 5, dtype=torch.long)
    with torch.inference_mode():
        assert torch.equal(model(idx)[0], plain(idx)[0])


def test_bf16_load_stays_standard(tiny_dir, op_calls):
    model, _ = tinygpt.load_model(tiny_dir, dtype=torch.bfloat16)
    assert linear_types(model) == {nn.Linear} and model.info.fast_path == {}
    with torch.inference_mode():
        model(torch.zeros(1, 4, dtype=torch.long))
    assert op_calls == []


@needs_onednn
@pytest.mark.parametrize("trainable", ["all", "top:2"])
def test_trainable_copy_of_fast_model_trains(tiny_dir, op_calls, trainable):
    """The shared model keeps its fast path and its bytes; a copy gets gradients on the standard path and learns
    exactly as a copy of the standard model does."""
    from conftest import state_checksum

    from tinygpt.finetune import trainable_copy
    from tinygpt.train import TrainConfig, train, trainable_parameters

    base, _ = tinygpt.load_model(tiny_dir)
    plain, _ = tinygpt.load_model(tiny_dir, fast_path=False)
    before = state_checksum(base)
    tuned = trainable_copy(base, trainable)
    data = torch.arange(100, 148).repeat(30)  # a 48-token cycle: easy to learn
    x, y = data[:32].view(1, -1), data[1:33].view(1, -1)
    params = trainable_parameters(tuned, trainable)
    for p in params:
        p.requires_grad_(True)
    n_calls = len(op_calls)
    tuned(x, targets=y)[1].backward()
    assert len(op_calls) == n_calls  # under autograd every Linear used F.linear
    assert all(p.grad is not None and p.grad.abs().sum().item() > 0 for p in params)
    for p in params:
        p.grad = None
    cfg = TrainConfig(steps=30, batch_size=4, context=32, lr=2e-2, warmup=3, eval_interval=30, eval_batches=2,
                      trainable=trainable)
    runs = [train(m, data[:1200], data[1200:], cfg) for m in (tuned, trainable_copy(plain, trainable))]
    losses = [[e["train_loss"] for e in r["history"]] for r in runs]
    assert losses[0][-1] < losses[0][0] - (2.0 if trainable == "all" else 0.25), losses[0]  # it learns
    assert max(abs(a - b) for a, b in zip(*losses)) <= 1e-4  # as the standard model's copy does
    assert state_checksum(base) == before and linear_types(base) == {FastLinear}
