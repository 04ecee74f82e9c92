"""The toy RLHF pipeline: the task's visible rule, the reward model (scalar head, Bradley-Terry loss), every PPO
piece (KL-shaped rewards, KL estimate, GAE, clipped objective, value loss, whitening) against hand computations on
tiny tensors, and a seconds-long end-to-end run through the function and the command line."""
import json
import math

import pytest
import torch
from conftest import run_cli

from tinygpt import GPT, GPTConfig
from tinygpt.beyond.dpo import dpo_loss
from tinygpt.beyond.rlhf import (
    KIND,
    SUBJECTS,
    PolicyWithValue,
    RewardModel,
    RLHFConfig,
    bradley_terry_loss,
    gae,
    gold_score,
    is_grammatical,
    kl_estimate,
    kl_shaped_rewards,
    masked_whiten,
    ppo_policy_loss,
    ppo_value_loss,
    preference_pairs,
    run_rlhf,
    sft_text,
    summary,
)


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=12, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()


# ---- the task -----------------------------------------------------------------------------------------
def test_task_rule_is_visible_in_the_text():
    assert gold_score(" was happy and kind.\n") == 2 and gold_score(" was sad and kind.\n") == 0
    assert gold_score(" likes the cruel dog.\n") == -1 and gold_score(" sweeeet.\n") == 0
    assert is_grammatical(" was happy and kind.\n") and is_grammatical(" saw the red boat.\n")
    assert not is_grammatical(" happy happy.\n") and not is_grammatical(" sweeeet.\n")
    assert not is_grammatical(" was happy and kind")  # no full stop: unfinished
    lines = sft_text(50, seed=1).strip("\n").split("\n")
    assert len(lines) == 50
    for line in lines:
        subject = next(s for s in SUBJECTS if line.startswith(s))
        assert is_grammatical(line[len(subject):])
    for prompt, chosen, rejected in preference_pairs(30, seed=2):
        assert prompt in SUBJECTS and gold_score(chosen) > gold_score(rejected)
        assert is_grammatical(chosen) and is_grammatical(rejected)


# ---- reward model -------------------------------------------------------------------------------------
def test_bradley_terry_loss_by_hand_and_as_dpo():
    rc, rr = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 2
    assert float(bradley_terry_loss(rc, rr)) == pytest.approx(expected)
    # DPO is Bradley-Terry on implicit rewards: with a zero reference and beta 1, the same number
    zero = torch.zeros(2)
    assert float(dpo_loss(rc, rr, zero, zero, beta=1.0)[0]) == pytest.approx(expected)


def test_reward_model_scalar_head_reads_the_last_token(gpt):
    rm = RewardModel(gpt).eval()
    ids = torch.tensor([[1, 2, 3, 4, 0, 0], [5, 6, 7, 8, 9, 10], [3, 3, 3, 0, 0, 0]])
    last = torch.tensor([3, 5, 2])
    with torch.no_grad():
        scores = rm(ids, last)
        h = gpt.transformer.ln_f(gpt.hidden_states(ids)[-1])  # (B, T, C)
        direct = torch.stack([rm.head(h[b, last[b]])[0] for b in range(3)])
        changed = ids.clone()
        changed[0, 4:] = 11  # tokens after the last one do not matter (causal, read at `last`)
        assert rm(changed, last)[0] == scores[0]
    assert scores.shape == (3,) and torch.allclose(scores, direct, atol=1e-6)
    rm.normalize(scores)
    with torch.no_grad():
        now = rm(ids, last)
    assert float(now.mean()) == pytest.approx(0, abs=1e-5) and float(now.std()) == pytest.approx(1, abs=1e-4)


def test_policy_with_value_shapes(gpt):
    pv = PolicyWithValue(gpt)
    ids = torch.randint(0, 12, (2, 7))
    logits, values = pv(ids)
    assert logits.shape == (2, 7, 12) and values.shape == (2, 7)
    assert torch.equal(values, torch.zeros(2, 7))  # value head starts at 0
    assert torch.allclose(logits, gpt(ids)[0], atol=1e-6)  # the same language model


# ---- PPO pieces by hand ---------------------------------------------------------------------------------
def test_kl_estimate_and_shaped_rewards():
    logp = torch.tensor([[0.0, -1.0, -2.0, 0.0]])
    ref = torch.tensor([[0.0, -1.5, -1.0, 0.0]])
    mask = torch.tensor([[False, True, True, False]])
    assert kl_estimate(logp, ref, mask).tolist() == pytest.approx([0.5 - 1.0])
    rewards = kl_shaped_rewards(logp, ref, mask, torch.tensor([3.0]), kl_coef=0.1)
    # -0.1 * 0.5 on the first response token; -0.1 * (-1) + the score 3 on the last; 0 elsewhere
    assert rewards.tolist() == [pytest.approx([0.0, -0.05, 3.1, 0.0])]


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.5, -0.2, 1.0, 0.0]])
    values = torch.tensor([[9.0, 0.3, 0.1, 0.4, 9.0]])  # 9s: outside the response, must not leak in
    mask = torch.tensor([[False, True, True, True, False]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # t=3 (last): delta = 1.0 - 0.4 = 0.6 (no next value), A = 0.6
    # t=2: delta = -0.2 + 0.9*0.4 - 0.1 = 0.06, A = 0.06 + 0.9*0.5*0.6 = 0.33
    # t=1: delta = 0.5 + 0.9*0.1 - 0.3 = 0.29, A = 0.29 + 0.45*0.33 = 0.4385
    assert adv.tolist() == [pytest.approx([0.0, 0.4385, 0.33, 0.6, 0.0])]
    assert ret.tolist() == [pytest.approx([0.0, 0.7385, 0.43, 1.0, 0.0])]
    adv1, _ = gae(rewards, values, mask, gamma=1.0, lam=1.0)  # lam = 1: return-to-go minus the value
    assert adv1[0, 1:4].tolist() == pytest.approx([1.3 - 0.3, 0.8 - 0.1, 1.0 - 0.4])


def test_clipped_policy_loss_by_hand():
    ratio = torch.tensor([[1.5, 0.5, 1.1, 0.5, 9.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, 5.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    old = torch.zeros(1, 5)
    loss, clipfrac = ppo_policy_loss(ratio.log(), old, adv, mask, clip=0.2)
    # per token max(-A r, -A clip(r)): max(-1.5, -1.2) = -1.2 (clipped); max(-0.5, -0.8) = -0.5;
    # max(1.1, 1.1) = 1.1; max(0.5, 0.8) = 0.8 (clipped); the 5th token is masked out
    assert float(loss) == pytest.approx((-1.2 - 0.5 + 1.1 + 0.8) / 4)
    assert float(clipfrac) == pytest.approx(2 / 4)


def test_value_loss_and_whitening_by_hand():
    v, old, ret = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]]), torch.tensor([[2.0, 0.0]])
    # clipped values 0.7 and 0.3: max((1-2)^2, (0.7-2)^2) = 1.69; max(0, 0.09) = 0.09; 0.5 * mean
    assert float(ppo_value_loss(v, old, ret, torch.ones(1, 2, dtype=torch.bool), clip=0.2)) == pytest.approx(0.445)
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    w = masked_whiten(x, torch.tensor([[True, True, True, False]]))
    s = math.sqrt(2 / 3)  # population std of 1, 2, 3
    assert w.tolist() == [pytest.approx([-1 / s, 0.0, 1 / s, 0.0], abs=1e-5)]


# ---- end to end -----------------------------------------------------------------------------------------
TINY = dict(n_layer=1, n_head=2, n_embd=32, sft_sentences=300, sft_steps=4, rm_pairs=30, rm_steps=2, rm_batch=8,
            ppo_steps=2, prompts_per_step=1, samples_per_prompt=4, eval_samples=8, max_new_tokens=8)


def test_tiny_pipeline_end_to_end():
    events = []
    res = run_rlhf(RLHFConfig(**TINY), callback=events.append)
    s = summary(res)
    assert set(s) == {"sft", "reward_model", "ppo", "seconds"}
    assert set(s["sft"]) == {"val_loss"} and set(s["reward_model"]) == {"val_accuracy"}
    assert set(s["ppo"]) == {"reward_start", "reward_end", "kl_end"}
    assert all(math.isfinite(v) for v in (s["sft"]["val_loss"], s["reward_model"]["val_accuracy"],
                                          *s["ppo"].values(), s["seconds"]))
    assert s["ppo"]["reward_start"] == pytest.approx(res["ppo"]["start"]["reward"])
    assert res["ppo"]["start"]["kl"] == pytest.approx(0.0, abs=1e-5)  # before PPO the policy is the SFT model
    stages = [e["stage"] for e in events]
    assert stages.index("reward_model") > stages.index("sft") and stages.index("ppo") > stages.index("reward_model")
    assert [e["step"] for e in events if e["stage"] == "ppo"] == [1, 2]
    assert len(res["ppo"]["samples"]["sft"]) == len(res["ppo"]["samples"]["ppo"]) == 8
    assert not any(p.requires_grad for m in res["models"].values() for p in m.parameters())


def test_pipeline_stops_between_steps():
    seen = []
    res = run_rlhf(RLHFConfig(**{**TINY, "sft_steps": 50, "rm_steps": 50, "ppo_steps": 50}), callback=seen.append,
                   should_stop=lambda: len(seen) >= 3)
    assert res["sft"]["steps"] < 50 and res["reward_model"]["steps"] == 0 and res["ppo"]["steps"] == 0


def test_cli_rlhf_json_keys_and_bad_flags():
    r = run_cli("rlhf", "--sft-steps", "2", "--rm-steps", "1", "--ppo-steps", "1", "--kl-coef", "0.1", "--seed", "3",
                "--threads", "1", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report) == {"sft", "reward_model", "ppo", "seconds", "budget"}
    assert report["budget"]["action"] == "rlhf" and report["budget"]["limits"]["run_seconds"] is None
    assert set(report["ppo"]) == {"reward_start", "reward_end", "kl_end"}
    r = run_cli("rlhf", "--kl-coef", "-1")
    assert r.returncode == 2 and "kl-coef" in r.stderr and "Traceback" not in r.stderr


def test_kind_words_are_single_words():
    assert all(w.isalpha() and w.islower() for w in KIND)
