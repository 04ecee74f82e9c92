"""tinygpt.budget and tinygpt.budget.estimates: limits from the environment, one-sentence refusals with the figures,
the ledger of runs in progress, every action's slider maxima refused and defaults accepted, and the memory estimate
against the peak RSS a real run reaches in a fresh process (tinygpt.budget.child). Two runs side by side
(the Train tab's A and B) are compared in benchmarks/bench_budget.py: threads make their peak vary from run to run."""
import json
import threading
import time
from dataclasses import replace

import pytest

from tinygpt import GPTConfig, count_parameters, flops_per_token, training_memory
from tinygpt.beyond.rlhf import RLHFConfig
from tinygpt.beyond.scaling import SweepConfig
from tinygpt.budget import (
    GB,
    LEDGER,
    BudgetError,
    Estimate,
    Ledger,
    Limits,
    Speed,
    check,
    human_bytes,
    human_seconds,
    limits_from_env,
    machine_speed,
    measure_speed,
    set_speed,
)
from tinygpt.budget.estimates import (
    CHILD_START_S,
    estimate_attention,
    estimate_dpo,
    estimate_finetune,
    estimate_flash_benchmark,
    estimate_gqa_uptrain,
    estimate_kv_cache,
    estimate_profile,
    estimate_rlhf,
    estimate_rlhf_ppo,
    estimate_sampling,
    estimate_scaling,
    estimate_train,
)
from tinygpt.budget.child import measure_peak

# A 2-vCPU Space: ~65 GFLOP/s on the Train tab's default model (README: 12,946 tokens/s x 5.0 MFLOP per token),
# a few ms of fixed cost per step, and a loss over GPT-2's vocabulary at about 5 ns per logit (3-9 ns measured here).
SPACE = Speed(flops_per_s=6.5e10, step_overhead_s=0.005, loss_s_per_logit=5e-9, score_s_per_logit=2e-9)
LIMITS = Limits()  # 2 GB and 10 minutes per run, 12 GB in all
GPT2 = GPTConfig.from_preset("gpt2")
EMBEDDED = GPTConfig.from_preset("tiny-shakespeare")


def refusal(estimate, limits=LIMITS, in_use=0) -> str:
    """The message check() raises, or '' when the estimate fits."""
    try:
        check(estimate, limits, in_use)
        return ""
    except BudgetError as e:
        return str(e)


def one_sentence(msg: str) -> bool:
    return msg.endswith(".") and ". " not in msg and "\n" not in msg


def refused_with_figures(est) -> bool:
    """Refused in one sentence that holds the run's own memory and time and the two limits."""
    msg = refusal(est)
    return (one_sentence(msg) and f"needs about {est.memory} and {est.time}," in msg
            and "at most 2 GB and 10 minutes" in msg and "TINYGPT_RUN_MEMORY_GB" in msg)


def train_config(vocab, n_layer, n_head, n_embd, context, **kw):
    return GPTConfig(vocab_size=vocab, block_size=context, n_layer=n_layer, n_head=n_head, n_embd=n_embd, **kw)


# ---- limits -----------------------------------------------------------------------------------------------
def test_default_limits_and_env_vars_raise_them(monkeypatch):
    assert limits_from_env({}) == Limits(2 * GB, 600, 12 * GB)
    env = {"TINYGPT_RUN_MEMORY_GB": "8", "TINYGPT_RUN_MINUTES": "90", "TINYGPT_MEMORY_GB": "100"}
    assert limits_from_env(env) == Limits(8 * GB, 5400, 100 * GB)
    for k in env:  # read when asked, not at import
        monkeypatch.setenv(k, env[k])
    assert limits_from_env() == Limits(8 * GB, 5400, 100 * GB)
    with pytest.raises(ValueError, match="TINYGPT_RUN_MINUTES must be a positive number"):
        limits_from_env({"TINYGPT_RUN_MINUTES": "ten"})


def test_env_vars_let_a_refused_run_through():
    est = estimate_finetune(GPT2, "all", 300, 16, 512, 200, 50_000, speed=SPACE)
    assert refusal(est)
    big = limits_from_env({"TINYGPT_RUN_MEMORY_GB": "64", "TINYGPT_RUN_MINUTES": "6000", "TINYGPT_MEMORY_GB": "64"})
    assert refusal(est, big) == ""
    assert refusal(est, Limits.unlimited(), in_use=10 ** 15) == ""


def test_message_is_one_sentence_with_both_figures_and_the_limit():
    est = Estimate("train", int(9.6e9), 31 * 3600, {"loss buffers": int(9.6e9)})
    assert refusal(est) == (
        "This run needs about 9.6 GB and 31 hours, but a run on this server may use at most 2 GB and 10 minutes: "
        "use fewer steps, a smaller batch or context, or raise TINYGPT_RUN_MEMORY_GB / TINYGPT_RUN_MINUTES on a "
        "private machine.")
    busy = refusal(Estimate("train", int(1.5e9), 60), in_use=int(11e9))
    assert one_sentence(busy) and "1.5 GB" in busy and "11 GB" in busy and "12 GB" in busy


def test_human_units():
    assert [human_bytes(n) for n in (2e9, 9.62e9, 4.5e8, 1.2e5)] == ["2 GB", "9.6 GB", "450 MB", "120 kB"]
    assert [human_seconds(s) for s in (40, 600, 31 * 3600, 5 * 86400)] == ["40 seconds", "10 minutes", "31 hours",
                                                                           "5 days"]


# ---- every action: the sliders' maxima, the defaults -----------------------------------------------------
def test_train_maxima_refused_defaults_fit():
    big = train_config(50257, 8, 8, 256, 256, n_experts=8, moe_top_k=4)
    est = estimate_train([big, big], 3000, 64, 256, sample_len=1000, corpus_tokens=338_025, speed=SPACE)
    assert refused_with_figures(est)
    assert est.memory_bytes == sum(est.parts.values())
    # the loss alone: 4 float32 (64, 256, 50257) tensors per run, two runs side by side
    assert est.parts["loss buffers"] == 2 * 4 * 4 * 64 * 256 * 50257
    assert est.flops >= 2 * 3000 * 64 * 256 * flops_per_token(big, 256)["per_token_train"]
    assert est.seconds >= est.flops / SPACE.flops_per_s > 24 * 3600
    small = [train_config(65, 4, 4, 128, 64), train_config(65, 4, 4, 128, 64, causal=False)]
    assert refusal(estimate_train(small, 500, 12, 64, sample_len=500, speed=SPACE)) == ""


def test_train_parts_are_the_calculators_own():
    c = train_config(65, 4, 4, 128, 64)
    est = estimate_train(c, 100, 12, 64, speed=SPACE)
    mem = training_memory(c, 12, 64, "fp32", "adamw")
    assert [est.parts[k] for k in ("weights", "gradients", "optimizer")] == \
        [mem["weights"], mem["gradients"], mem["optimizer"]]


def test_finetune_maxima_refused_defaults_fit():
    assert refused_with_figures(estimate_finetune(GPT2, "all", 300, 16, 512, 200, 50_000, speed=SPACE))
    for config in (GPT2, EMBEDDED):
        est = estimate_finetune(config, speed=SPACE)
        assert refusal(est) == ""
    # keep_best clones the whole state dict (the tied matrix twice), and two clones are alive for a moment
    est = estimate_finetune(GPT2, speed=SPACE)
    assert est.parts["best weights"] == 2 * 4 * (count_parameters(GPT2)["total"] + 50257 * 768)


def test_dpo_maxima_refused_defaults_fit_on_the_embedded_model():
    assert refused_with_figures(estimate_dpo(GPT2, "all", 300, 32, runs=2, speed=SPACE))
    assert refusal(estimate_dpo(EMBEDDED, speed=SPACE)) == ""
    # GPT-2 with all weights and two betas: two policies of 124M parameters with AdamW do not fit in 2 GB
    est = estimate_dpo(GPT2, speed=SPACE)
    assert est.parts["weights"] + est.parts["gradients"] + est.parts["optimizer"] >= 2 * 16 * 124_000_000
    assert refused_with_figures(est)


def test_rlhf_defaults_fit_and_ppo_maxima_fit():
    assert refusal(estimate_rlhf(speed=SPACE)) == ""
    assert refusal(estimate_rlhf_ppo(RLHFConfig(ppo_steps=200), speed=SPACE)) == ""
    top = estimate_rlhf(RLHFConfig(sft_steps=1000, rm_steps=300, ppo_steps=200), speed=SPACE)
    assert top.memory_bytes < 0.5 * GB and top.seconds > estimate_rlhf(speed=SPACE).seconds


def test_scaling_maxima_refused_defaults_fit():
    assert refusal(estimate_scaling(speed=SPACE)) == ""
    shapes = tuple((6, 4, 256 - 16 * i) for i in range(10))
    top = SweepConfig(shapes=shapes, steps=5000, batch_size=64, context=128, budgets=(1e13, 3e13, 1e14, 2e14, 4e14),
                      min_steps=1, max_steps=10000)
    assert refused_with_figures(estimate_scaling(top, speed=SPACE))


def test_scaling_in_child_processes_counts_each_child():
    """The tab's sweep trains in two child processes: each holds Python + torch and its own corpus, and two runs may
    peak at once; its time is a child's start plus the slower share, each at half the FLOP rate."""
    from tinygpt.efficiency.measure import CHILD_OVERHEAD

    here, one, two = (estimate_scaling(speed=SPACE, workers=w) for w in (0, 1, 2))
    assert "child processes" not in here.parts and one.parts["child processes"] == CHILD_OVERHEAD
    assert two.parts["child processes"] == 2 * CHILD_OVERHEAD and two.parts["data"] == 2 * here.parts["data"]
    assert two.parts["activations"] == 2 * here.parts["activations"]
    assert two.memory_bytes > one.memory_bytes > here.memory_bytes and two.flops == here.flops
    assert one.seconds == pytest.approx(here.seconds + CHILD_START_S)
    # the shares split the runs' fixed step costs, so two children beat one; neither beats the FLOPs at full speed
    assert two.seconds < one.seconds and two.seconds > CHILD_START_S + here.flops / SPACE.flops_per_s / 2


def test_gqa_uptrain_embedded_fits_gpt2_refused():
    assert refusal(estimate_gqa_uptrain(EMBEDDED, 1, 30, corpus_tokens=338_025, speed=SPACE)) == ""
    assert refused_with_figures(estimate_gqa_uptrain(GPT2, 3, 200, speed=SPACE))


def test_flash_benchmark_16k_standard_refused_defaults_fit():
    est = estimate_flash_benchmark([1024, 4096, 16384], head_dim=256, repeats=5, speed=SPACE)
    assert refused_with_figures(est)
    assert est.parts["attention"] >= 2 * 16384 ** 2 * 4  # the two T x T float32 matrices
    assert refusal(estimate_flash_benchmark([1024], speed=SPACE)) == ""


def test_profile_maxima_refused_defaults_fit():
    assert refused_with_figures(estimate_profile(GPT2, 64, [128, 256, 512, 1024], 20, speed=SPACE))
    assert refusal(estimate_profile(GPT2, 1, [128, 256, 512, 1024], 5, speed=SPACE)) == ""


def test_inference_actions_fit_at_their_maxima():
    for est in (estimate_kv_cache(GPT2, 16, 256, speed=SPACE), estimate_sampling(GPT2, 6, 500, speed=SPACE),
                estimate_attention(GPT2, 1024, speed=SPACE)):
        assert refusal(est) == ""
    # attention maps: every layer and head, 1,024 x 1,024 float32
    assert estimate_attention(GPT2, 1024, speed=SPACE).parts["attention maps"] == 12 * 12 * 1024 ** 2 * 4


def test_as_dict_is_json():
    est = estimate_train(train_config(50257, 8, 8, 256, 256), 3000, 64, 256, speed=SPACE)
    d = json.loads(json.dumps(est.as_dict(LIMITS)))
    assert d["fits"] is False and d["message"] == refusal(est) and d["memory_bytes"] == est.memory_bytes
    assert json.loads(json.dumps(est.as_dict(Limits.unlimited())))["fits"] is True


# ---- the ledger -------------------------------------------------------------------------------------------
def test_ledger_refuses_over_commitment_and_releases():
    ledger = Ledger(Limits(2 * GB, 600, 3 * GB))
    run = Estimate("train", int(1.5 * GB), 60)
    with ledger.reserve(run):
        with ledger.reserve(run):
            assert ledger.in_use() == 3 * GB
            with pytest.raises(BudgetError) as e:
                with ledger.reserve(run):
                    pass
            assert one_sentence(str(e.value)) and "3 GB" in str(e.value)
        assert ledger.in_use() == 1.5 * GB
    with pytest.raises(RuntimeError):
        with ledger.reserve(run):
            raise RuntimeError("the run failed")
    assert ledger.in_use() == 0 and ledger.running() == []


def test_ledger_threads_never_pass_the_total():
    ledger = Ledger(Limits(2 * GB, 600, 4 * GB))
    run = Estimate("train", GB, 1)
    peak, refused, lock, gate = [0], [0], threading.Lock(), threading.Barrier(12)

    def worker():
        gate.wait()
        try:
            with ledger.reserve(run):
                with lock:
                    peak[0] = max(peak[0], ledger.in_use())
                gate_hold.wait()
        except BudgetError:
            with lock:
                refused[0] += 1

    gate_hold = threading.Event()
    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while refused[0] < 8 and time.monotonic() < deadline:  # 4 runs hold the 4 GB, the other 8 were refused
        time.sleep(0.01)
    gate_hold.set()
    for t in threads:
        t.join()
    assert (peak[0], refused[0], ledger.in_use()) == (4 * GB, 8, 0)


def test_process_wide_ledger_reads_the_environment(monkeypatch):
    monkeypatch.setenv("TINYGPT_MEMORY_GB", "1")
    with pytest.raises(BudgetError):
        with LEDGER.reserve(Estimate("train", int(1.5 * GB), 60)):
            pass
    assert LEDGER.in_use() == 0


# ---- time -------------------------------------------------------------------------------------------------
def test_speed_is_measured_once_and_can_be_injected():
    measured = measure_speed(steps=1)
    assert measured.flops_per_s > 0 and measured.step_overhead_s > 0 and measured.source == "measured"
    set_speed(SPACE)
    try:
        assert machine_speed() is SPACE
        fast = estimate_train(train_config(65, 4, 4, 128, 64), 500, 12, 64)  # no speed given: the injected one
        slow = estimate_train(train_config(65, 4, 4, 128, 64), 500, 12, 64,
                              speed=replace(SPACE, flops_per_s=SPACE.flops_per_s / 2))
        assert slow.seconds - fast.seconds == pytest.approx(fast.flops / SPACE.flops_per_s)
    finally:
        set_speed(None)


# ---- memory against a measurement -------------------------------------------------------------------------
SHAPES = {
    # activations dominate: a character model, 4 layers of d=256, 16 x 128 tokens
    "activations": dict(configs=[dict(vocab_size=65, block_size=128, n_layer=4, n_head=4, n_embd=256)],
                        steps=3, batch_size=16, context=128, corpus_tokens=300_000),
    # the loss and the evaluation dominate: GPT-2's 50,257-token vocabulary on a 2-layer d=64 model
    "vocabulary": dict(configs=[dict(vocab_size=50257, block_size=64, n_layer=2, n_head=2, n_embd=64)],
                       steps=3, batch_size=8, context=64, corpus_tokens=300_000),
    # Mixture-of-Experts: 4 experts, top-2 (each token's rows gathered and gated twice per layer)
    "MoE": dict(configs=[dict(vocab_size=65, block_size=128, n_layer=4, n_head=4, n_embd=128, n_experts=4,
                              moe_top_k=2)], steps=3, batch_size=16, context=128, corpus_tokens=300_000),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_memory_estimate_within_30_percent_of_measured_peak_rss(name):
    s = SHAPES[name]
    est = estimate_train([GPTConfig(**c) for c in s["configs"]], s["steps"], s["batch_size"], s["context"],
                         sample_len=0, corpus_tokens=s["corpus_tokens"], speed=SPACE)
    measured = measure_peak("train", s)["peak_extra_bytes"]
    assert 100e6 < measured < 800e6  # big enough that allocator noise is small
    assert 0.7 <= est.memory_bytes / measured <= 1.3
