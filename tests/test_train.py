"""The shared training loop: it learns, it stops when asked, and checkpoints round-trip (char and GPT-2)."""
import json
import math

import pytest
import torch
from conftest import run_cli

from tinygpt import GPT, CharTokenizer, GPTConfig, TrainConfig, load_model, save_checkpoint, train
from tinygpt.data import TextError, check_length, clean_text, decode_upload, split_tokens
from tinygpt.finetune import trainable_copy

TEXT = "the quick brown fox jumps over the lazy dog. " * 60


def char_setup(causal=True):
    tok = CharTokenizer.from_text(TEXT)
    data = torch.tensor(tok.encode(TEXT))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32, causal=causal))
    return tok, data, model


def test_loop_lowers_loss_and_reports_every_step():
    tok, data, model = char_setup()
    tr, va = split_tokens(data, 0.1)
    events = []
    res = train(model, tr, va, TrainConfig(steps=60, batch_size=8, context=32, lr=3e-3, warmup=5, eval_interval=20),
                callback=events.append)
    assert [e["step"] for e in events] == list(range(1, 61))
    evals = [e for e in events if e["val_loss"] is not None]
    assert [e["step"] for e in evals] == [1, 20, 40, 60]
    assert evals[-1]["val_loss"] < 0.5 * evals[0]["val_loss"]
    assert res["val_accuracy"] > 0.5 and res["steps"] == 60 and not res["stopped"]
    assert all(p.requires_grad for p in model.parameters())  # flags restored


def test_stop_between_steps():
    tok, data, model = char_setup()
    tr, va = split_tokens(data, 0.1)
    seen = []
    res = train(model, tr, va, TrainConfig(steps=500, batch_size=4, context=32, eval_interval=100),
                callback=seen.append, should_stop=lambda: len(seen) >= 7)
    assert res["stopped"] and res["steps"] == 7
    assert res["val_loss"] is not None  # a final evaluation after stopping


def test_char_checkpoint_roundtrip(tmp_path):
    tok, data, model = char_setup()
    save_checkpoint(model, tok, str(tmp_path))
    m2, tok2 = load_model(str(tmp_path), fast_path=False)  # the checkpoint, not the kernel: bit-exact
    assert isinstance(tok2, CharTokenizer) and tok2.chars == tok.chars
    x = data[:20].unsqueeze(0)
    with torch.no_grad():
        assert torch.equal(model.eval()(x)[0], m2(x)[0])


def test_ablation_switches_roundtrip(tmp_path):
    tok, data, _ = char_setup()
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16, causal=False,
                    layernorm=False, attn_scale=False)
    save_checkpoint(GPT(cfg), tok, str(tmp_path))
    m2, _ = load_model(str(tmp_path))
    assert (m2.config.causal, m2.config.layernorm, m2.config.attn_scale) == (False, False, False)


def test_trainable_copy_never_touches_base(tiny_dir):
    base, tok = load_model(tiny_dir)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    data = torch.tensor(tok.encode(TEXT))
    tr, va = split_tokens(data, 0.2)
    for spec in ("top:1", "all"):
        tuned = trainable_copy(base, spec)
        train(tuned, tr, va, TrainConfig(steps=3, batch_size=2, context=16, trainable=spec, eval_interval=3))
        changed = [k for k, v in tuned.state_dict().items() if not torch.equal(v, before[k])]
        assert changed and all(k.startswith("transformer.h.3") or k.startswith("transformer.ln_f") for k in changed) \
            if spec == "top:1" else changed
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not any(p.requires_grad for p in base.parameters())


@pytest.mark.parametrize("raw,lossy,msg", [
    (b"", False, "empty"), (b"\x00\x01\x02binary\x00", False, "binary"),
    (bytes(range(1, 32)) * 10, False, "binary"), ("caf\u00e9".encode("latin-1") * 10, False, "not UTF-8")])
def test_bad_uploads(raw, lossy, msg):
    with pytest.raises(TextError, match=msg):
        decode_upload(raw, lossy)


def test_lossy_decode_and_cleaning():
    assert "\ufffd" in decode_upload("caf\u00e9 au lait".encode("latin-1"), lossy=True)
    text, steps = clean_text("Title\r\nhttps://example.org/x\r\n\r\n\r\n\r\nHello   world\x07 \n 12 \n")
    assert text == "Title\n\nHello world"
    assert any("URL" in s for s in steps) and any("control" in s for s in steps)
    with pytest.raises(TextError, match="limit"):
        check_length("a" * 200_001, 10, 100_000)
    with pytest.raises(TextError, match="too short"):
        check_length("tiny", 130, 2)


def test_cli_train_json_and_sample(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(TEXT)
    out = tmp_path / "ck"
    r = run_cli("train", "--text", str(f), "--tokenizer", "char", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
                "--block-size", "16", "--batch-size", "4", "--steps", "20", "--lr", "3e-3", "--no-causal-mask",
                "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) == {"steps", "train_loss", "val_loss", "val_accuracy", "tokens_per_s", "seconds", "params_total",
                      "params_active",  # a dense model: params_active == params_total, no expert_load
                      "world_size", "grad_accum", "global_batch", "device", "losses",  # where and how it trained
                      "budget"}  # its estimate (tinygpt.budget), not limited: the CLI is limited only with --budget
    assert d["world_size"] == 1 and d["global_batch"] == 4 and len(d["losses"]) == 20
    assert d["steps"] == 20
    m, tok = load_model(str(out))
    assert m.config.causal is False and isinstance(tok, CharTokenizer)
    r = run_cli("sample", "--model", str(out), "--start", "the", "--max-new-tokens", "10", "--num-samples", "1",
                "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["samples"][0].startswith("the")
    r = run_cli("eval", "--model", str(out), "--text", str(f), "--context", "16", "--json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    held_out = torch.tensor(tok.encode(TEXT))[int(len(TEXT) * 0.9):]
    assert ev["tokens"] == len(held_out) - 1  # every token of the last 10% after the first, predicted once
    assert abs(ev["perplexity"] - math.exp(ev["loss"])) < 1e-6 * ev["perplexity"]


def test_train_windows_are_measured_beside_validation():
    """eval_train adds loss and accuracy on fixed training windows (eval mode) and changes nothing else."""
    text = TEXT * 4
    tok = CharTokenizer.from_text(text)
    data = torch.tensor(tok.encode(text))
    tr, va = data[:int(len(data) * 0.9)], data[int(len(data) * 0.9):]
    out = {}
    for flag in (False, True):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16,
                              embd_pdrop=0.1, resid_pdrop=0.1))
        out[flag] = train(model, tr, va, TrainConfig(steps=8, batch_size=4, context=16, eval_interval=4,
                                                     eval_batches=1, eval_train=flag))
    assert out[False]["train_eval_loss"] is None and out[False]["train_eval_accuracy"] is None
    assert out[True]["val_loss"] == out[False]["val_loss"] and out[True]["train_loss"] == out[False]["train_loss"]
    evals = [e for e in out[True]["history"] if e["val_loss"] is not None]
    assert [e["step"] for e in evals] == [1, 4, 8]
    assert all(e["train_eval_loss"] > 0 and 0 <= e["train_eval_accuracy"] <= 1 for e in evals)
    assert out[True]["train_eval_loss"] == evals[-1]["train_eval_loss"]


def test_cli_train_reads_a_built_in_corpus(tmp_path):
    from tinygpt.cli.train import CORPUS_NAMES
    from tinygpt.data import CORPORA

    assert CORPUS_NAMES == tuple(CORPORA.values())
    r = run_cli("train", "--corpus", "python-docs", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
                "--block-size", "16", "--batch-size", "2", "--steps", "2", "--eval-interval", "2", "--out",
                str(tmp_path / "ck"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["steps"] == 2 and "train windows" in r.stderr  # progress shows both accuracies
    bad = run_cli("train", "--corpus", "nope", "--out", "o")
    assert bad.returncode == 2 and "nope" in bad.stderr and "Traceback" not in bad.stderr
    both = run_cli("train", "--corpus", "python-docs", "--text", "t.txt", "--out", "o")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    neither = run_cli("train", "--out", "o")
    assert neither.returncode == 2 and "--text" in neither.stderr and "--corpus" in neither.stderr
