"""DPO: the loss against the paper's formula and a case computed by hand, sequence log-probs against a direct
computation, line-numbered messages for malformed pairs files, the synthetic rule, a short training run that
leaves the shared model untouched, and the command line."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, state_checksum

import tinygpt
from tinygpt import GPT, GPTConfig
from tinygpt.beyond.dpo import (
    KIND,
    UNKIND,
    DPOConfig,
    PairsError,
    dpo_loss,
    parse_pairs,
    read_pairs,
    sequence_logps,
    synthetic_pairs,
    train_dpo,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig.from_preset("tiny")).eval()


def test_dpo_loss_hand_made_case():
    # policy: chosen -1.0, rejected -2.0; reference: chosen -1.5, rejected -1.0; beta 0.5
    # chosen log-ratio +0.5, rejected log-ratio -1.0 -> beta * (0.5 - (-1.0)) = 0.75 -> loss = ln(1 + e^-0.75)
    loss, cr, rr = dpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.0]),
                            beta=0.5)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-0.75)), abs=1e-6)  # 0.3901...
    assert cr.tolist() == pytest.approx([0.25]) and rr.tolist() == pytest.approx([-0.5])


def test_dpo_loss_matches_formula_on_random_batches():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (-torch.rand(7, generator=g) * 30 for _ in range(4))
    for beta in (0.05, 0.1, 1.0):
        loss, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta)
        z = beta * ((pc - rc) - (pr - rr))
        expected = torch.log1p(torch.exp(-z)).mean()  # -log sigmoid(z) = log(1 + e^-z)
        assert float(loss) == pytest.approx(float(expected), rel=1e-5)
        assert torch.allclose(chosen, beta * (pc - rc)) and torch.allclose(rejected, beta * (pr - rr))


def test_dpo_loss_starts_at_ln2_and_pushes_the_right_way():
    pc = torch.tensor([-3.0, -5.0], requires_grad=True)
    pr = torch.tensor([-4.0, -2.0], requires_grad=True)
    loss, cr, rr = dpo_loss(pc, pr, pc.detach(), pr.detach(), beta=0.1)  # policy = reference
    assert float(loss.detach()) == pytest.approx(math.log(2)) and cr.abs().max() == 0 and rr.abs().max() == 0
    loss.backward()
    assert (pc.grad < 0).all() and (pr.grad > 0).all()  # raise the chosen, lower the rejected


def direct_response_logp(model, prompt, response):
    """Reference: log-softmax of the whole row, the response tokens' entries summed."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits, _ = model(ids)
    logp = F.log_softmax(logits[0, :-1].double(), -1)
    targets = ids[0, 1:]
    return sum(float(logp[t, targets[t]]) for t in range(len(prompt) - 1, ids.size(1) - 1))


def test_sequence_logps_equals_direct_computation(model):
    prompts = [[10, 20, 30], [5], [7, 8, 9, 11, 12]]
    responses = [[40, 50], [60, 70, 80, 90], [13]]
    with torch.no_grad():
        batch = sequence_logps(model, prompts, responses)
        singles = [float(sequence_logps(model, p, r)) for p, r in zip(prompts, responses)]
        padded = sequence_logps(model, prompts, responses, pad_to=20)
        as_tensor = sequence_logps(model, torch.tensor([1, 2, 3]), torch.tensor([4, 5]))
    direct = [direct_response_logp(model, p, r) for p, r in zip(prompts, responses)]
    assert batch.shape == (3,) and batch.tolist() == pytest.approx(direct, abs=1e-4)
    assert singles == pytest.approx(direct, abs=1e-4) and padded.tolist() == pytest.approx(direct, abs=1e-4)
    assert float(as_tensor) == pytest.approx(direct_response_logp(model, [1, 2, 3], [4, 5]), abs=1e-4)


def test_sequence_logps_has_gradients_and_refuses_bad_input(model):
    m = tinygpt.finetune.trainable_copy(model)
    for p in m.parameters():
        p.requires_grad_(True)
    lp = sequence_logps(m, [1, 2], [3, 4])
    lp.backward()
    assert m.transformer.wte.weight.grad is not None
    with pytest.raises(ValueError, match="at least one token"):
        sequence_logps(model, [1, 2], [])
    with pytest.raises(ValueError, match="context"):
        sequence_logps(model, [1], list(range(64)))


@pytest.mark.parametrize("text,msg", [
    ('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "b"', "Line 2 .* not valid JSON"),
    ('{"prompt": "a", "chosen": "b", "rejected": "c"}\n\n{"prompt": "a", "chosen": "b"}', "Line 3 .* no 'rejected'"),
    ('{"chosen": "b"}', "Line 1 .* no 'prompt' and no 'rejected'"),
    ('{"prompt": "a", "chosen": "  ", "rejected": "c"}', "Line 1 .*'chosen' is empty"),
    ('{"prompt": "a", "chosen": "b", "rejected": ""}', "Line 1 .*'rejected' is empty"),
    ('["a", "b", "c"]', "Line 1 .* JSON object"),
    ('{"prompt": "a", "chosen": 3, "rejected": "c"}', "Line 1 .*'chosen' must be text"),
    ('{"prompt": "a", "chosen": "same", "rejected": "same"}', "Line 1 .* the same text"),
    ("\n  \n", "no pairs"),
])
def test_malformed_pairs_name_their_line(text, msg):
    with pytest.raises(PairsError, match=msg):
        parse_pairs(text)


def test_read_pairs_file(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text('{"prompt": "", "chosen": " yes", "rejected": " no"}\n\n{"prompt": "Q", "chosen": "a", '
                 '"rejected": "b", "extra": 1}\n', encoding="utf-8")
    pairs = read_pairs(str(f))
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("", " yes", " no"), ("Q", "a", "b")]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"prompt": "caf\xe9"}')
    with pytest.raises(PairsError, match="not UTF-8"):
        read_pairs(str(bad))


def test_synthetic_pairs_follow_the_visible_rule():
    pairs = synthetic_pairs(50, seed=3)
    assert pairs == synthetic_pairs(50, seed=3) and len(pairs) == 50
    for p in pairs:
        c, r = p.chosen.split(), p.rejected.split()
        assert c[0] in KIND and r[0] in UNKIND and c[1:] == r[1:]  # one adjective differs, nothing else
        assert p.prompt.split(":\n")[0].isupper()  # a speaker's name, as the embedded model writes plays


def test_train_dpo_learns_and_leaves_the_base_model_alone(models, tiny_dir):
    base, tok = models.get(tiny_dir)
    before = state_checksum(base)
    events = []
    cfg = DPOConfig(steps=12, batch_size=8, lr=3e-3, beta=0.5, eval_interval=4)
    res = train_dpo(base, tok, synthetic_pairs(40, seed=1), cfg, callback=events.append)
    assert state_checksum(base) == before
    assert res["steps"] == 12 and res["held_out"] == 4 and res["train_pairs"] == 36
    first = events[0]
    assert first["step"] == 0 and first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["reward_accuracy"] == 0.0 and first["reward_margin"] == 0.0  # policy = reference: all ties
    assert [e["step"] for e in events if e["val"] is not None] == [0, 4, 8, 12]
    assert res["loss"] < math.log(2) and res["reward_margin"] > 0  # it learned something on held-out pairs
    assert res["loss"] == events[-1]["val"]["loss"]
    assert not any(p.requires_grad for p in res["policy"].parameters())


def test_train_dpo_stops_and_refuses_bad_settings(models, tiny_dir):
    base, tok = models.get(tiny_dir)
    calls = []
    res = train_dpo(base, tok, synthetic_pairs(6), DPOConfig(steps=50), should_stop=lambda: len(calls) > 2,
                    callback=calls.append)
    assert res["stopped"] and res["steps"] == 2 and res["held_out"] == 0  # 6 pairs: nothing held out
    assert res["history"][-1]["val"] is not None
    with pytest.raises(ValueError, match="beta"):
        train_dpo(base, tok, synthetic_pairs(4), DPOConfig(beta=0))


def test_cli_dpo_json_keys(tiny_dir, tmp_path):
    out = tmp_path / "policy"
    r = run_cli("dpo", "--model", tiny_dir, "--synthetic", "12", "--steps", "2", "--beta", "0.1", "--out", str(out),
                "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report) == {"steps", "loss", "reward_accuracy", "reward_margin", "seconds", "budget"}
    assert report["budget"]["action"] == "dpo" and report["budget"]["fits"] is True
    assert report["steps"] == 2 and (out / "model.safetensors").exists()


def test_cli_dpo_bad_pairs_file(tiny_dir, tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "rejected": "c"}\n')
    r = run_cli("dpo", "--model", tiny_dir, "--pairs", str(f), "--steps", "1")
    assert r.returncode == 2 and "Line 2" in r.stderr and "'chosen'" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("dpo", "--model", tiny_dir, "--steps", "1")
    assert r.returncode == 2 and "--pairs" in r.stderr
