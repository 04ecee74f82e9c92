"""Every Explain sentence that states an outcome follows the run's own numbers: the Explain functions of Train,
Fine-tune, DPO, RLHF and Scaling laws get synthetic results in which the textbook outcome happens, and the same
results reversed, and their text must say what the numbers say (no run, no model needed)."""
import pytest

from tabs import alignment, finetune, scaling
from tabs.train.figures import explain
from tabs.train.moe import explain_moe
from tabs.train.probe import SEED_SPREAD, paired_se
from tinygpt import GPTConfig
from tinygpt.beyond.scaling import fit_loglinear, fit_power_law

BASE = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)


def result(val, train=None, fit=None, steps=500, acc=0.36, fit_acc=0.37):
    """A finished run as tinygpt.train returns it (fit: loss on the training windows)."""
    return {"steps": steps, "train_loss": val if train is None else train, "val_loss": val, "val_accuracy": acc,
            "train_eval_loss": val if fit is None else fit, "train_eval_accuracy": fit_acc, "stopped": False}


def probe(loss, last=None, attn_max=0.5, saturated=0.05, growth=3.0):
    """A probe() result whose window losses are all equal (paired standard error 0: the noise is SEED_SPREAD)."""
    return {"window_loss": [loss] * 32, "loss": loss, "last_loss": loss if last is None else last,
            "attn_max": attn_max, "attn_entropy": 0.5, "attn_saturated": saturated, "resid_growth": growth}


def two(a_val, b_val, b_changes, a_probe=None, b_probe=None, **kw):
    cfgs = {"A": BASE, "B": BASE.replace(**b_changes)}
    res = {"A": result(a_val, **kw.get("a", {})), "B": result(b_val, **kw.get("b", {}))}
    probes = {"A": a_probe or probe(a_val), "B": b_probe or probe(b_val)}
    return explain(res, cfgs, {}, "char", probes)


def test_noise_is_the_seed_spread_or_the_paired_error():
    assert paired_se([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 0
    assert paired_se([1.0, 1.0, 1.0, 1.0], [1.1, 0.9, 1.1, 0.9]) == pytest.approx(0.2 / (3 ** 0.5) / 2, rel=1e-6)
    text = two(2.250, 2.238, dict(attn_scale=False))
    assert f"{SEED_SPREAD:.3f} nats" in text


def test_sqrt_dk_follows_the_numbers():
    # the run: B without the scaling beat A by 0.012, less than the seed-to-seed spread
    text = two(2.250, 2.238, dict(attn_scale=False))
    assert "does not show it" in text and "within the noise" in text and "agrees" not in text
    assert "2.238" in text and "2.250" in text and "vanishes" in text  # theory is still stated, as theory
    # B clearly better: the text says so, and why theory and run can disagree
    text = two(2.250, 2.100, dict(attn_scale=False), b_probe=probe(2.1, saturated=0.1))
    assert "*lower*, by more than the noise" in text and "here 10% of the rows saturated, vs 5%" in text
    # B's attention measured much sharper, yet no worse: the text says the saturation is there and why it did not cost
    text = two(2.250, 2.236, dict(attn_scale=False), b_probe=probe(2.236, attn_max=0.72, saturated=0.40),
               a_probe=probe(2.25, attn_max=0.31, saturated=0.03))
    assert "the saturation is there (40% of the rows vs 3%)" in text and "within the noise" in text
    assert text.index("| A |") < text.index("| B |")
    # B clearly worse, with saturated attention: the run agrees with theory
    text = two(2.250, 2.450, dict(attn_scale=False), b_probe=probe(2.45, attn_max=0.97, saturated=0.8))
    assert "This run agrees" in text and "does not show it" not in text and "80%" in text


def test_layernorm_follows_the_numbers():
    text = two(2.25, 2.60, dict(layernorm=False), b_probe=probe(2.6, growth=40.0))
    assert "**LayerNorm.** **This run agrees" in text and "×40.0" in text
    text = two(2.25, 2.10, dict(layernorm=False))
    assert "**LayerNorm.** **This run does not show it" in text and "lower, by more than the noise" in text
    assert "Why they can disagree here" in text


def test_causal_mask_follows_the_numbers():
    # copying: low loss with the future visible, high loss where it is hidden
    text = two(2.25, 0.40, dict(causal=False), b_probe=probe(0.4, last=3.1), a={"train": 2.3}, b={"train": 0.3})
    assert "Without the causal mask" in text and "its low loss was copying" in text
    # not pulled away yet, and not worse at the last position
    text = two(2.25, 2.24, dict(causal=False), b_probe=probe(2.24, last=2.26), a={"train": 2.3}, b={"train": 2.29})
    assert "has not pulled away" in text and "no worse than the masked model" in text
    assert "its low loss was copying" not in text


def test_dropout_follows_the_numbers():
    drop = dict(embd_pdrop=0.1, attn_pdrop=0.2, resid_pdrop=0.1)
    # no overfitting: the gap is ~0 for both, and dropout only costs
    text = explain({"A": result(2.30, train=2.45, fit=2.28), "B": result(2.25, fit=2.24)},
                   {"A": BASE.replace(**drop), "B": BASE}, {}, "char", {"A": probe(2.30), "B": probe(2.25)})
    assert "**Dropout**" in text and "neither run overfits" in text and "only slowed learning" in text
    assert "0.1/0.2/0.1" in text and "is within the noise" in text
    # the measured row: held-out text easier than the training windows (negative gaps)
    text = explain({"A": result(2.398, train=2.507, fit=2.432), "B": result(2.250, train=2.343, fit=2.306)},
                   {"A": BASE.replace(**drop), "B": BASE}, {}, "char", {"A": probe(2.398), "B": probe(2.25)})
    assert "even lower than on its training windows, gap -0.056" in text and "only slowed learning" in text
    # run B (no dropout) overfits, A's dropout narrows the gap and helps on held-out text
    text = explain({"A": result(1.80, fit=1.70), "B": result(1.95, fit=1.40)},
                   {"A": BASE.replace(**drop), "B": BASE}, {}, "char", {"A": probe(1.8), "B": probe(1.95)})
    assert "run B overfits (gap +0.550)" in text and "narrowed the gap, as theory says" in text
    assert "paid off on held-out text" in text
    # overfitting, but dropout did not narrow the gap
    text = explain({"A": result(1.95, fit=1.40), "B": result(1.90, fit=1.40)},
                   {"A": BASE.replace(**drop), "B": BASE}, {}, "char", {"A": probe(1.95), "B": probe(1.9)})
    assert "did not narrow the gap" in text and "not better for it" in text


def test_positions_follow_the_numbers():
    text = two(2.25, 2.24, dict(pos_encoding="none"))
    assert "within the noise: this run cannot rank them" in text and "does not show a cost" in text
    text = two(2.25, 2.60, dict(pos_encoding="none"))
    assert "more than the noise" in text and "This run agrees" in text


def test_one_run_reads_loss_perplexity_and_the_gap():
    text = explain({"A": result(2.0, fit=1.5)}, {"A": BASE}, {}, "char", None)
    assert "e^2.000 = 7.4" in text and "memorise" in text and "B" not in text.split("| steps |")[1]
    text = explain({"A": result(2.0, fit=2.01)}, {"A": BASE}, {}, "char", None)
    assert "does **not overfit**" in text


def test_identical_runs_and_several_differences_are_said():
    assert "the same run twice" in two(2.25, 2.25, {})
    text = two(2.25, 2.10, dict(attn_scale=False, layernorm=False))
    assert "differ in 2 settings" in text


def test_moe_follows_the_numbers():
    cfgs = {"A": BASE.replace(n_inner=130), "B": BASE.replace(n_experts=4)}
    res = {"A": {"params_total": 1000, "params_active": 1000, "val_loss": 2.0, "tokens_per_s": 900.0},
           "B": {"params_total": 3000, "params_active": 1000, "val_loss": 2.3, "tokens_per_s": 1200.0,
                 "expert_load": [[0.25, 0.25, 0.25, 0.25]]}}
    text = explain_moe(res, cfgs)
    assert "did not pay off" in text and "faster" in text and "slower" not in text
    res["B"].update(val_loss=1.7, tokens_per_s=500.0)
    text = explain_moe(res, cfgs)
    assert "as the extra parameters promise" in text and "slower" in text
    res["B"].update(val_loss=2.01)
    assert "cannot rank them" in explain_moe(res, cfgs)


def test_finetune_verdict_follows_the_numbers():
    assert "**fell**" in finetune.held_out_verdict({"perplexity": 40.0}, {"perplexity": 25.0})
    rose = finetune.held_out_verdict({"perplexity": 40.0}, {"perplexity": 55.0})
    assert "**rose**" in rose and "overfitting" in rose
    assert "hardly moved" in finetune.held_out_verdict({"perplexity": 40.0}, {"perplexity": 40.1})


def dpo_run(start_loss=0.693, end_loss=0.5, chosen=0.2, rejected=-0.1, acc=0.8):
    start = {"loss": start_loss, "reward_accuracy": 0.0, "chosen_reward": 0.0, "rejected_reward": 0.0,
             "reward_margin": 0.0}
    end = {"loss": end_loss, "reward_accuracy": acc, "chosen_reward": chosen, "rejected_reward": rejected,
           "reward_margin": chosen - rejected}
    return {"start": start, "end": end, "steps": 40, "held_out": 20, "train_pairs": 180}


def test_dpo_explain_follows_the_numbers():
    text = alignment.dpo_explain({"A": dpo_run()}, {"A": 0.1}, 200, True, {})
    assert "chosen responses became more likely" in text and "gap between them grew" in text
    # chosen reward negative but smaller than the rejected drop: pushed down, not "more likely"
    text = alignment.dpo_explain({"A": dpo_run(chosen=-0.05, rejected=-0.3)}, {"A": 0.1}, 200, True, {})
    assert "pushing the rejected responses down" in text and "became more likely" not in text
    # both rose, chosen less than rejected: the gap shrank and the loss rose
    text = alignment.dpo_explain({"A": dpo_run(end_loss=0.75, chosen=-0.2, rejected=0.1, acc=0.3)}, {"A": 0.1},
                                 200, True, {})
    assert "became less likely" in text and "has not learned these pairs yet" in text
    assert "did **not** fall" in text


def rlhf_state(kl_coef, start, end):
    ppo = {"kl_coef": kl_coef, "steps": 60, "start": start, "end": end}
    return {"reward_model": {"steps": 100, "val_accuracy": 0.9, "val_pairs": 50}, "ppo_runs": [ppo],
            "params": 1_000_000, "sft": {"steps": 500, "val_loss": 1.2}}


def test_rlhf_explain_follows_the_numbers():
    s = {"reward": 0.0, "gold": 0.0, "grammatical": 0.9, "kl": 0.0, "length": 40}
    good = {"reward": 1.0, "gold": 1.0, "grammatical": 0.9, "kl": 0.3, "length": 42}
    assert "the KL penalty (coefficient 0.2) held the policy" in alignment.rlhf_explain(rlhf_state(0.2, s, good))
    text = alignment.rlhf_explain(rlhf_state(0.0, s, good))
    assert "PPO worked" in text and "even without a KL penalty" in text and "penalty (coefficient 0)" not in text
    hacked = {"reward": 2.0, "gold": -0.5, "grammatical": 0.2, "kl": 5.0, "length": 90}
    assert "Reward hacking" in alignment.rlhf_explain(rlhf_state(0.0, s, hacked))


def sweep(n_opts, size_losses=(3.0, 2.6, 2.4, 2.3)):
    """A sweep as analyse_sweep returns it: a size sweep, and three budgets whose best sizes are n_opts."""
    size = [{"params": p, "tokens": 64000, "flops": 6 * p * 64000, "val_loss": v, "group": "size", "budget": None,
             "steps": 1000, "n_layer": 1, "n_embd": 16} for p, v in zip((1e3, 2e3, 4e3, 8e3), size_losses)]
    budgets = [{"flops": C, "n_opt": n, "d_opt": C / (6 * n), "tokens_per_param": C / (6 * n * n), "loss_opt": 2.0,
                "edge": False, "method": "parabola", "runs": []} for C, n in zip((1e10, 3e10, 1e11), n_opts)]
    fit = fit_power_law([r["params"] for r in size], [r["val_loss"] for r in size])
    opt = fit_loglinear([b["flops"] for b in budgets], n_opts)
    return {"runs": size, "fit": fit, "budgets": budgets, "optimum": {**opt, "loss_exponent": -0.05},
            "config": {"context": 64}}


def test_scaling_explain_follows_the_numbers():
    text = scaling.explain(sweep((2e3, 4e3, 8e3)))
    assert "here it does: 2,000, 4,000, 8,000" in text and "standard error is ±" in text
    assert "scatter around the fitted curve by" in text and "±0.01–0.02" not in text
    assert "The two readings disagree" not in text
    assert "here it does not at every step" in scaling.explain(sweep((4e3, 2e3, 3e3)))
    # exponent 0.49 (below 0.5: tokens per parameter should rise) while the end points fall 1,667 -> 1,361
    text = scaling.explain(sweep((1e3, 1e5, 3.5e3)))
    assert "The two readings disagree here" in text and "the same fact as an exponent" not in text
    assert scaling.slope_se(0.5, 1.0, 3) == 0 and scaling.slope_se(0.5, 0.9, 2) is None


def test_stopped_and_diverged_runs_say_so():
    stopped = {**result(2.0), "val_loss": None, "train_loss": None, "steps": 0}
    assert "stopped before its first evaluation" in explain({"A": stopped}, {"A": BASE}, {}, "char", None)
    assert "diverged" in explain({"A": result(float("nan"))}, {"A": BASE}, {}, "char", None)


def test_runs_are_listed_a_then_b_whichever_finished_first():
    cfgs = {"B": BASE.replace(attn_scale=False), "A": BASE}
    text = explain({"B": result(2.236), "A": result(2.250)}, cfgs, {}, "char", None)
    assert text.index("| A |") < text.index("| B |")


def test_dense_vs_moe_with_matched_width_is_one_difference():
    text = explain({"A": result(2.25), "B": result(2.20)},
                   {"A": BASE.replace(n_inner=130), "B": BASE.replace(n_experts=4, moe_aux_weight=0.0)}, {}, "char",
                   None)
    assert "differ in" not in text
    text = explain({"A": result(2.25), "B": result(2.20)},
                   {"A": BASE.replace(n_experts=4), "B": BASE.replace(n_experts=4, moe_aux_weight=0.0)}, {}, "char",
                   None)
    assert "the same run twice" not in text and "differ in" not in text
