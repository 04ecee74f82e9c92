"""What a training or inference run holds and does, term by term: the memory of each phase and the work (FLOPs,
steps, calls, logits) that tinygpt.budget.estimates adds up per action.

Memory is the calculator's own formulas (tinygpt.compute: bytes per parameter, Korthikanti's activations, the KV
cache, a forward pass's tensors) plus what they leave out, each term found by measuring real runs (peak RSS of a
fresh process, tinygpt.budget.child; tests/test_budget.py and benchmarks/bench_budget.py compare again):

* Attention. The calculator counts standard attention (two T x T matrices and a 1-byte dropout mask). Without
  attention dropout, PyTorch's fused SDPA kernel trains instead: it keeps no T x T matrix, only its output and
  the log-sum-exp of each row. With attention dropout the plain path runs, and a CPU dropout keeps its mask as a
  float32 tensor (input * noise), 4 bytes per element, not 1; so do the residual dropouts (none when p = 0).
* The loss. The formula counts the fp32 logits (B, T, V). Cross-entropy adds its log-softmax, and the backward
  pass the gradient of that and of the logits: 4 such tensors at the peak. (The training loop also holds the
  previous step's logits while the next forward runs; with the gradients of the weights that is the same peak.)
* Mixture-of-Experts: each expert's gathered input rows and its gated output (2k·d per token), not in the formula.
* The evaluation pass: a no-grad forward of 16 windows (tinygpt.compute.forward_activation_bytes) and the
  log-softmax's copy of its logits, next to the weights, their gradients, the optimizer and the last logits.
* Keeping the best weights (fine-tuning): a clone of the whole state dict (the tied matrix twice, once per key),
  and for a moment two of them (the new one is built before the old one is dropped).
* The allocator: glibc's malloc gives a freed block over its mmap threshold (at most 32 MiB) back to the kernel,
  but keeps smaller ones in its heaps, where the next step's tensors fit them only in part. So RSS grows past the
  live tensors after the first step, by ALLOCATOR_SHARE (measured) of what every step allocates anew in blocks
  under 32 MiB (activations, gradients, logits of a small vocabulary): +35 % to +70 % of those in the runs measured.

Work: the FLOPs of every forward and backward pass (tinygpt.compute.flops_per_token; backward = 2 x forward for
what trains), the training steps and forward calls (a fixed cost each), and the logits the loss and the scoring
pass over (memory-bound work that a FLOP count misses); tinygpt.budget.Speed turns them into seconds.
"""
from __future__ import annotations

from typing import Optional

from . import Speed, machine_speed
from ..compute import activation_bytes, flops_per_token, forward_activation_bytes, parameter_tensors
from ..config import GPTConfig
from ..params import count_parameters

E = 4  # every run trains in float32
ALLOCATOR_SHARE = 0.45  # RSS above the live tensors reallocated every step in heap-sized blocks (measured)
MMAP_MAX = 32 * 2 ** 20  # glibc's largest mmap threshold: bigger blocks go back to the kernel when freed
EVAL_ROWS = 16  # tinygpt.evaluate.token_logprobs scores 16 windows per forward pass


# ---- what one pass keeps -------------------------------------------------------------------------------
def block_activation_bytes(c: GPTConfig, batch: int, seq: int) -> int:
    """Bytes one trained block keeps for the backward pass, in fp32: the calculator's per-layer formula, with
    attention and dropout as PyTorch keeps them on a CPU (see the module docstring)."""
    s, b, h, a, A = seq, batch, c.n_embd, c.n_head, c.attn_dim
    per = activation_bytes(c, b, s, "fp32")["per_layer"] - (2 * s * b * h + a * s * s * b)  # 1-byte masks out
    if c.attn_pdrop == 0:  # fused SDPA: its output and one log-sum-exp per row instead of the T x T matrices
        per += -2 * E * a * s * s * b + E * s * b * A + 4 * b * a * s
    else:  # plain attention: a float32 dropout mask, and q and k scaled into new tensors
        per += 4 * a * s * s * b + E * s * b * (A + c.kv_heads * c.head_dim)
    if c.resid_pdrop > 0:
        per += 4 * 2 * s * b * h  # the masks of the two residual dropouts
    if c.n_experts:
        per += E * s * b * h * 2 * c.moe_top_k + 16 * s * b * c.moe_top_k  # gathered rows, gated outputs, indices
    return per


def loss_bytes(c: GPTConfig, rows: int, seq: int, tensors: int = 4) -> int:
    """`tensors` fp32 (rows, seq, vocab) tensors: logits, log-softmax and the two gradients at the peak."""
    return tensors * 4 * rows * seq * c.vocab_size


def eval_pass_bytes(c: GPTConfig, rows: int, seq: int) -> int:
    """A no-grad forward over `rows` windows (the calculator's forward_activation_bytes) and the log-softmax's copy
    of its logits (tinygpt.evaluate.target_logprobs)."""
    return forward_activation_bytes(c, rows, seq, "fp32") + 4 * rows * seq * c.vocab_size


def state_bytes(c: GPTConfig) -> int:
    """A clone of the state dict (keep_best): every tensor once per key, so a tied matrix twice."""
    return E * (count_parameters(c)["total"] + (c.vocab_size * c.n_embd if c.tie_weights else 0))


def trained_part(c: GPTConfig, trainable: str = "all") -> dict:
    """What `trainable` ("all" or "top:N") trains: {params, layers, head (does the LM head's weight train)}."""
    p = count_parameters(c)
    if trainable == "all":
        return {"params": p["total"], "layers": c.n_layer, "head": True}
    if not str(trainable).startswith("top:"):
        raise ValueError(f"Unknown trainable spec {trainable!r} (use 'all' or 'top:N').")
    n = int(str(trainable).split(":", 1)[1])
    if not 1 <= n <= c.n_layer:
        raise ValueError(f"top:N needs 1 <= N <= {c.n_layer}.")
    ln_f = p["layer_norm"] - c.n_layer * (p["per_block"] - (p["attention"] + p["feed_forward"]) // c.n_layer)
    return {"params": n * p["per_block"] + ln_f, "layers": n, "head": False}  # the top N blocks and ln_f


# ---- FLOPs ------------------------------------------------------------------------------------------------
def forward_flops(c: GPTConfig, seq: int, logits_rows: Optional[int] = None) -> float:
    """FLOPs of one forward pass over `seq` tokens (Kaplan: 2N + 2·n_layer·n_ctx·A per token); the LM head runs
    on `logits_rows` positions (default all)."""
    f = flops_per_token(c, seq)
    head = 2 * c.vocab_size * c.n_embd
    rows = seq if logits_rows is None else logits_rows
    return seq * (f["per_token_inference"] - head) + rows * head


def train_flops(c: GPTConfig, seq: int, trained: dict) -> float:
    """FLOPs of one training pass over `seq` tokens: the forward, and a backward (2x the forward) through the
    trained top blocks and the LM head (its input gradient always; its weight gradient when it trains)."""
    fwd = forward_flops(c, seq)
    head = 2 * c.vocab_size * c.n_embd * seq
    blocks = (fwd - head) * trained["layers"] / c.n_layer
    return fwd + 2 * blocks + head * (2 if trained["head"] else 1)


def generate_flops(c: GPTConfig, rows: int, prompt: int, new: int) -> float:
    """FLOPs of tinygpt.generate with the KV cache: a prefill of the prompt, then one token per step attending to
    all before it; past the context every step reruns the last block_size tokens (the cache is rebuilt)."""
    block = c.block_size
    f = flops_per_token(c, 1)
    per_token = f["per_token_inference"] - f["attention_forward"]  # without the attention term (added per length)
    att = f["attention_forward"]  # 2·n_layer·A per position attended to
    p = min(prompt, block)
    total = forward_flops(c, p, 1)
    inside = max(0, min(new, block - p))  # steps whose sequence still fits the context
    total += inside * per_token + att * (inside * p + inside * (inside + 1) / 2)
    total += (new - inside) * forward_flops(c, block, 1)
    return rows * total


def windows(n_tokens: int, context: int, max_windows: Optional[int] = None) -> int:
    """How many windows tinygpt.evaluate scores in n_tokens held-out tokens (at most max_windows full ones)."""
    from ..evaluate import window_starts

    return len(window_starts(max(n_tokens, 2), context, max_windows))


def evaluations(steps: int, interval: int) -> int:
    """Evaluation steps of tinygpt.train: the first, every `interval`-th, and the last."""
    return steps // interval + (interval > 1) + (steps % interval != 0)


# ---- a training run ---------------------------------------------------------------------------------------
def heap_share(tensor_bytes: float, total: float) -> float:
    """`total` if its tensors (each about `tensor_bytes`) are small enough to live in malloc's heap, else 0."""
    return total if tensor_bytes < MMAP_MAX else 0


def training_run(c: GPTConfig, batch: int, seq: int, trainable: str = "all", copies: str = "all",
                 eval_rows: int = EVAL_ROWS, keep_best: bool = False, loss_tensors: int = 4,
                 logits_kept: bool = True) -> dict:
    """Parts of one training run at its peak: weights (`copies`: "all" = the whole model, "trained" = clones of
    the trained tensors only), gradients, optimizer, the largest of its phases (a step: activations and loss
    buffers; an evaluation: the last logits and the evaluation pass; with keep_best, the clone of the best weights,
    two at once), and the allocator's share of what is allocated anew every step in heap-sized blocks."""
    t = trained_part(c, trainable)
    p_total = count_parameters(c)["total"]
    fixed = {"weights": E * (t["params"] if copies == "trained" else p_total),
             "gradients": E * t["params"],
             "optimizer": 8 * t["params"] + 4 * parameter_tensors(c)}  # AdamW's m, v and step counters
    embedded = 2 * E * seq * batch * c.n_embd if trainable == "all" else E * seq * batch * c.n_embd
    if trainable == "all" and c.embd_pdrop > 0:
        embedded += 4 * seq * batch * c.n_embd  # the embedding dropout's float32 mask
    logits = 4 * batch * seq * c.vocab_size  # one (B, T, V) float32 tensor
    acts = t["layers"] * block_activation_bytes(c, batch, seq) + embedded
    widest = E * seq * batch * max(c.ffn_dim * (c.moe_top_k if c.n_experts else 1), c.attn_dim + 2 * c.kv_heads
                                   * c.head_dim, c.n_head * seq if c.attn_pdrop else 0)  # a block's largest tensor
    last = logits if logits_kept else 0
    ev_logits = 4 * eval_rows * seq * c.vocab_size
    ev = eval_pass_bytes(c, eval_rows, seq)
    phases = [({"activations": acts, "loss buffers": loss_tensors * logits},
               heap_share(widest, acts) + heap_share(logits, loss_tensors * logits)),
              ({"last logits": last, "evaluation": ev},
               heap_share(logits, last) + ev - 2 * ev_logits + heap_share(ev_logits, 2 * ev_logits))]
    if keep_best:
        phases.append(({"last logits": last, "best weights": 2 * state_bytes(c)}, heap_share(logits, last)))
    peak, heap = max(phases, key=lambda ph: sum(ph[0].values()) + ALLOCATOR_SHARE * ph[1])
    heap += heap_share(E * c.vocab_size * c.n_embd, fixed["gradients"])  # gradients: allocated every step
    return {**fixed, **peak, "allocator": ALLOCATOR_SHARE * heap}


class Work:
    """A run's work, counted as the time model (tinygpt.budget.Speed) reads it."""

    def __init__(self):
        self.flops = self.steps = self.calls = self.loss_logits = self.scored_logits = 0.0

    def train(self, c: GPTConfig, rows: int, seq: int, trained: Optional[dict] = None, n: float = 1) -> "Work":
        """n training steps over rows x seq tokens (the loss over every position's logits)."""
        self.flops += n * rows * train_flops(c, seq, trained or trained_part(c))
        self.steps += n
        self.loss_logits += n * rows * seq * c.vocab_size
        return self

    def forward(self, c: GPTConfig, rows: int, seq: int, n: float = 1) -> "Work":
        """n no-grad passes over rows windows of seq tokens, scored (log-softmax and argmax of every logit),
        EVAL_ROWS windows per call."""
        self.flops += n * rows * forward_flops(c, seq)
        self.calls += n * -(-rows // EVAL_ROWS)
        self.scored_logits += n * rows * seq * c.vocab_size
        return self

    def generate(self, c: GPTConfig, rows: int, prompt: int, new: int, n: float = 1) -> "Work":
        """n calls of tinygpt.generate: one forward call and one draw over the vocabulary per new token."""
        self.flops += n * generate_flops(c, rows, prompt, new)
        self.calls += n * new
        self.scored_logits += n * rows * new * c.vocab_size
        return self

    def add(self, other: "Work") -> "Work":
        """This work plus another's (a sweep's shares, counted apart for their times, together for its FLOPs)."""
        for k in ("flops", "steps", "calls", "loss_logits", "scored_logits"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        return self

    def seconds(self, speed: Optional[Speed]) -> float:
        s = speed if speed is not None else machine_speed()
        return s.seconds(self.flops, self.steps, self.calls, self.loss_logits, self.scored_logits)
