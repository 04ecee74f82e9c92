"""Every action's default settings, in one table per action: what `python -m tinygpt ...` starts from, and what
each tab's form opens with.

A table is a read-only dict (keys are the command line's option names, dashes as underscores). Where a tab opens
with other values than the command line, the tab has its own table (`SAMPLE_TAB`, `TRAIN_TAB`, ...) built from the
command line's, so the difference stands in one line with its reason. A value of None means "not a constant":
derived from other settings (e.g. fine-tuning's warm-up is steps // 10) or left to the callee.

Plain values only: this module imports nothing (the CLI reads it while building its parser, before torch loads).
"""
from __future__ import annotations

from types import MappingProxyType


def table(**values) -> MappingProxyType:
    """A read-only dict: a caller that changed a default would change it for every later caller."""
    return MappingProxyType(values)


def variant(base, **changes) -> MappingProxyType:
    """A table that differs from `base` only in `changes` (new keys are allowed: settings only a tab has)."""
    return MappingProxyType({**base, **changes})


SEED = 1337  # nanoGPT's seed: every command and tab starts from it, so a command reproduces a tab's run
A100_TFLOPS = 312.0  # an A100's dense bf16/fp16 tensor-core peak (the calculator's GPU)

# Options most commands share (tinygpt/cli/common.py)
COMMON = table(
    model="gpt2",  # GPT-2 124M from the Hub cache; the embedded model when the Hub cannot be reached
    hub_timeout=5.0,  # seconds to wait for the Hub before falling back to the embedded model
    seed=SEED,
    dtype="fp32",  # the fast path for CPUs that lack bf16 matmuls, and exact
    device=None,  # None = $TINYGPT_DEVICE, else auto: CUDA, then Apple's MPS, then the CPU (tinygpt.device)
)

# ---- sample (Sampling tab) -------------------------------------------------------------------------------------
SAMPLE = table(
    model=COMMON["model"],
    start="\n",  # nanoGPT's sample.py: an empty prompt
    num_samples=10,  # nanoGPT's sample.py
    max_new_tokens=500,  # nanoGPT's sample.py
    temperature=0.8,  # a little sharper than the model's distribution: fewer odd words, still varied
    top_k=200,  # nanoGPT's value; 0 = off
    top_p=1.0,  # 1.0 = off
    seed=SEED,
    dtype=COMMON["dtype"],  # bf16 = the tab's fast mode
    layers=None,  # None = every block (Layer pruning's configurations otherwise)
)
# The tab opens on a projector-sized run: 3 columns of 100 tokens after a prompt that shows the knobs' effect.
SAMPLE_TAB = variant(SAMPLE, start="one ring to rule them all,", num_samples=3, max_new_tokens=100)

# ---- Layer pruning tab (the command line: sample --layers even|odd|first-half|last-half|0,2,4) ---------------
PRUNE = table(
    configs=("full", "even", "first half"),  # compared side by side on the same prompt and seed
    custom="0,1",  # blocks of the "custom" configuration
    max_new_tokens=60,  # long enough to see repetition, short enough for several configurations
    temperature=0.8,  # as SAMPLE
    top_k=200,  # as SAMPLE
    seed=SEED,
)

# ---- params (Parameters & compute tab) -------------------------------------------------------------------------
PARAMS = table(
    preset="gpt2",  # the starting shape; flags override its fields
    hub_timeout=10.0,  # seconds for a Hub config.json (a few kB, no fallback: wait longer than for weights)
    batch_size=1,
    seq_len=None,  # None = the block size
    dtype="fp32",  # fp16 / bf16 = mixed precision with fp32 master weights
    optimizer="adamw",  # "sgd" = SGD with momentum
    tokens=10 ** 12,  # training tokens D: the scale of a GPT-3-era run
    tflops=A100_TFLOPS,  # GPU peak TFLOPS
    mfu=0.4,  # a typical model-FLOPs utilisation for large-scale training
)

# ---- train (Train from scratch tab) ----------------------------------------------------------------------------
TRAIN = table(
    block_size=128,  # context length
    batch_size=16,  # sequences per step
    steps=1000,
    lr=1e-3,  # peak learning rate (linear warm-up, cosine decay to 10 %)
    warmup=50,  # linear warm-up steps
    weight_decay=0.1,  # AdamW decay on 2-D weights
    eval_interval=100,  # steps between evaluations
    val_fraction=0.1,  # the last 10 % of the text is held out
    seed=SEED,
    save_dtype="fp32",  # dtype of the written checkpoint
    keep_best=False,  # end with the last weights (True: the best evaluation's)
    grad_accum=1,  # micro-batches per optimizer step on each process (torchrun: x processes)
    tokenizer="char",  # characters: a vocabulary of ~65 trains in minutes on a CPU
    n_layer=4,  # nanoGPT's CPU shape: 4 x 4 heads x 128
    n_head=4,
    n_embd=128,
    dropout=0.0,  # all three rates; a small model on a short run does not overfit
    embd_pdrop=None,  # None = dropout
    attn_pdrop=None,  # None = dropout
    resid_pdrop=None,  # None = dropout
    n_inner=None,  # None = 4 * n_embd
    n_experts=0,  # 0 = dense MLP
    moe_top_k=1,  # experts per token (1 = Switch routing)
    moe_aux_weight=0.01,  # weight of the load-balancing loss (Switch Transformer's alpha)
    eval_batches=8,  # validation batches per evaluation
    pos_encoding="learned",  # GPT-2's wpe
)
# The tab trains two models side by side while a class watches: shorter context, fewer steps, a higher lr;
# warm-up (min(100, steps // 10)) and evaluations (steps // 20) scale with the Steps slider.
# 300 steps at lr 3e-3: every course-map row's effect shows (causal-mask collapse, the LayerNorm and RoPE gaps,
# dropout's train-loss cost, balanced experts) in about 25 s of 2 idle cores per run pair (benchmarks/bench_rows.py)
TRAIN_TAB = variant(TRAIN, block_size=64, batch_size=12, steps=300, lr=3e-3, warmup=None, eval_interval=None,
                    eval_batches=4,
                    corpus="tiny-shakespeare",  # tinygpt.data.CORPORA (offline: the Python docs, with a note)
                    sample_len=300,  # characters or tokens sampled from each run after training
                    embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0,  # run A's rates (and B's unless it has its own)
                    causal=True, layernorm=True, attn_scale=True,  # run A's switches (B's too, except b_causal)
                    compare_b=True,  # train run B beside A (off: one run, e.g. "train a small GPT")
                    b_causal=False,  # run B starts without the causal mask: the tab's first question
                    b_own_dropout=False,  # run B uses A's dropout rates unless this is on ...
                    b_embd_pdrop=0.0, b_attn_pdrop=0.0, b_resid_pdrop=0.0,  # ... then these
                    match_active=False)  # the dense run's FFN width matches the MoE run's active parameters

# ---- finetune (Fine-tune tab); also tinygpt.finetune.DEFAULTS -----------------------------------------------------
# Sized for a free CPU Space (2 vCPU), measured by benchmarks/bench_finetune.py: a 10k-character text is fitted in
# well under a minute without overfitting. Warm-up and evaluations are steps // 10 (finetune_config); the command
# line's --weight-decay and --save-dtype are TRAIN's.
FINETUNE = table(
    trainable="top:2",  # the top 2 blocks: ~15 MB of private weights per user for GPT-2
    steps=40,
    context=128,  # tokens per training sequence (the command line's --block-size)
    batch_size=4,
    lr=1e-3,
    seed=SEED,
    keep_best=True,  # the best held-out weights are kept
    val_fraction=0.1,  # the held-out last 10 %
)
FINETUNE_TAB = variant(FINETUNE, max_new_tokens=60,  # the before/after samples
                       lossy=False,  # undecodable bytes are an error (on: replaced with U+FFFD)
                       drop_boilerplate=True)  # URL / page-number / header lines are dropped when cleaning

# ---- eval, embed, attention -----------------------------------------------------------------------------------------
EVAL = table(
    context=128,  # window length (the embedded model's README number uses 128)
    val_fraction=0.1,  # the held-out last 10 %, as training holds it out
)
EMBED = table(
    pool="mean",  # a multi-token word is the mean of its tokens' embeddings
    space=False,  # encode "word", not " word"
)
ATTENTION = table(
    layers=None,  # None = every block
)
# The Embeddings tab: the exercise's five common and five rare words, a neighbour query, the "channel" sentences.
EMBED_TAB = variant(EMBED, common="dog, city, book, love, science",
                    rare="xqzt, blorpt, thraldor, uvuvwevwe, zzzzz",
                    neighbour_word="dog", neighbours=10,
                    ctx_word="channel",
                    ctx_sentences=("I switched the TV over to another channel\n"
                                   "The boat drifted slowly down the river channel\n"
                                   "The spy used a secret communication channel"))
# The Attention tab opens on a ~50-token prompt (long enough for patterns, short enough to read every label),
# layer 0, head 0, the model's own weights (a view of tinygpt.interpret.attention.HEAD_VIEWS: model / no mask /
# no scale).
ATTENTION_TAB = variant(ATTENTION, prompt=(
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of"
    " a wife. However little known the feelings or views of such a man may be on his first entering a"
    " neighbourhood, this truth is so well fixed in the minds of the surrounding families."),
    layer=0, head=0, view="model")
# The Positions tab (no command): the sinusoidal table, the decay for several d, RoPE's q·k over (m, n).
POSITIONS = table(
    n_positions=128,  # rows of the sinusoidal heatmap
    d_map=64,  # its width d
    dims="16, 64, 256",  # sizes d whose PE(i)·PE(j) decay is compared
    head_dim=64,  # RoPE head size
    base=10000.0,  # RoPE base (Su et al.; LLaMA)
    rope_positions=64,  # m, n in 0 .. rope_positions-1
    pair=8,  # the 2-D pair drawn turning (0 = the fastest)
    seed=0,  # of the random q and k
)

# ---- profile (Efficiency tab, forward-pass profile) -------------------------------------------------------------
PROFILE = table(
    batch=1,
    seq_len=128,
    repeats=5,  # timed runs after 2 warm-up runs; medians are reported
    dtype=COMMON["dtype"],
    threads=None,  # None = torch's choice
)
# The tab profiles four lengths at once: block/8, block/4, block/2, block (for the model picked).
PROFILE_TAB = variant(PROFILE, seq_len=None)

# ---- Efficiency tab: KV cache, GQA, FlashAttention (no command) ---------------------------------------------------
KV_CACHE = table(
    prompt="ROMEO:",  # the embedded model's favourite opening
    n_new=64,  # tokens timed with and without the cache
)
GQA = table(
    n_kv_head=None,  # None = the divisor of n_head nearest n_head / 4
    seq_lens=None,  # None = block/8, block/4, block/2, block
    batch=1,
    rounds=3,  # interleaved timing rounds (a machine that gets busier slows every variant alike)
    uptrain_steps=30,  # a short version of the GQA paper's 5 % uptraining
    uptrain_lr=1e-3,  # the tab's; tinygpt.efficiency.uptrain's own default is 3e-4
)
FLASH = table(
    tokens=16,  # the step-by-step trace: small enough to show every tile
    block_q=4,  # query rows per tile
    block_k=4,  # key/value rows per tile
    head_size=8,
    causal=True,
    seed=0,  # of the random q, k, v
    bench_lengths=(1024, 4096, 16384),  # the exercise's sequence lengths (the tab offers those that fit)
    bench_head_size=64,
    bench_repeats=1,  # timed repeats after 1 warm-up (tinygpt.efficiency.measure_attention's default is 3)
)

# ---- scaling (Scaling laws tab: the shipped sweep, assets/scaling/default_sweep.json, was made with these) -------
SCALING = table(
    text=None,  # None = Tiny Shakespeare (offline: the Python docs)
    # (n_layer, n_head, n_embd): about 2x more non-embedding parameters per rung, 0.9k to 100k at a 65-char vocab
    shapes=((1, 1, 8), (1, 2, 16), (1, 2, 24), (1, 2, 32), (2, 2, 32), (2, 4, 48), (2, 4, 64)),
    steps=1000,  # size sweep: every model trains this many steps (D = steps * batch_size * context tokens)
    budgets=(1.5e10, 5e10, 1.5e11),  # compute budgets C in FLOPs (C = 6 N D) for the IsoFLOP runs
    context=64,  # tokens per training sequence
    batch_size=16,  # sequences per step
    lr=1e-2,  # peak learning rate (warm-up, then cosine decay to the end of each run, as Chinchilla)
    min_steps=80,  # a budget run shorter than this is skipped (too few steps to learn anything)
    max_steps=3500,  # ... and one longer than this too (it would dominate the wall time)
    eval_windows=256,  # validation windows of `context` tokens for every loss reported
    tokenizer="char",
    seed=SEED,
    workers=1,  # processes on this machine that share the sweep's runs (torchrun: its ranks instead)
)
# The course map's scaling-law row re-runs a lecture-sized sweep (issue 21.3: <= 60 s alone on 2 cores): 5 sizes
# for 500 steps and the two smaller budgets, whose optima are both inside their size range (a U, not an edge).
# benchmarks/bench_rows.py, Tiny Shakespeare, 2 idle cores: 13 runs in ~38 s, L(N) r^2 0.995, N_opt ∝ C^0.84.
SCALING_LECTURE = variant(SCALING, shapes=((1, 1, 8), (1, 2, 16), (1, 2, 24), (1, 2, 32), (2, 4, 48)), steps=500,
                          budgets=(1.5e10, 5e10))

# ---- dpo (DPO tab) --------------------------------------------------------------------------------------------------
DPO = table(
    model="tiny-shakespeare",  # the synthetic pairs are Shakespeare-shaped
    beta=0.1,  # how far the policy may move from the reference
    steps=100,  # optimizer steps
    batch_size=8,  # pairs per step
    lr=1e-4,  # peak learning rate (AdamW; warm-up then cosine)
    trainable="all",  # "all" or "top:N" (as fine-tuning)
    seed=SEED,
)
# The tab compares two betas in one run, so each run is shorter; 200 synthetic pairs unless a file is uploaded.
DPO_TAB = variant(DPO, steps=30, lr=2e-4, synthetic=200,  # both betas' margins clear 0.5 in ~17 s (bench_rows)
                  source="synthetic",  # "synthetic" pairs, or "upload" a JSONL file
                  beta_b=0.5,  # run B's beta (0 = no second run)
                  prompt="ROMEO:\nThou art most",  # the before/after samples: an adjective comes next
                  sample_len=12)  # tokens: the adjective and a few more

# ---- rlhf (RLHF tab); the rest of the pipeline's settings are tinygpt.beyond.rlhf.RLHFConfig's -------------------
RLHF = table(
    seed=SEED,
    # sized for a lecture (benchmarks/bench_rows.py: ~25 s on 2 idle cores; SFT grammatical, the reward model's
    # held-out accuracy ~0.95, PPO's reward up by ~1 and, at KL 0, reward hacking)
    n_layer=3,  # the toy model: 3 blocks of d=96, characters
    n_embd=96,
    sft_steps=500,
    sft_lr=5e-3,
    rm_steps=60,
    ppo_steps=40,  # rollouts (each followed by 2 passes over it)
    kl_coef=0.2,  # the KL penalty; 0 lets the policy drift anywhere: reward hacking
    ppo_lr=2e-4,
    threads=None,  # None = torch's choice
    samples=8,  # SFT vs PPO samples the command line prints (text output)
)

# Every action's table, by command-line command (and tab-only action) name.
ACTIONS = MappingProxyType({
    "sample": SAMPLE, "prune": PRUNE, "params": PARAMS, "train": TRAIN, "finetune": FINETUNE, "eval": EVAL,
    "embed": EMBED, "attention": ATTENTION, "positions": POSITIONS,
    "profile": PROFILE, "kv_cache": KV_CACHE, "gqa": GQA, "flash": FLASH,
    "scaling": SCALING, "dpo": DPO, "rlhf": RLHF,
})
