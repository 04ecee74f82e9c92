"""What a trained run does inside, measured on fixed held-out windows after training: the numbers the Train tab's
Explain reads to check each ablation's textbook story against this run (no Gradio here).

    probe(model, val_data, context)  -> per run: loss per window and at the last position (where the next token is
                                        hidden even without the causal mask, as when generating), attention
                                        sharpness (max weight, entropy, saturated rows), residual-stream growth
    paired_se(a, b)                  -> the standard error of the mean difference of two runs' window losses
"""
from __future__ import annotations

import math

import torch

from tinygpt.evaluate import target_logprobs, window_starts
from tinygpt.interpret.attention import pattern_scores

PROBE_WINDOWS = 32  # held-out windows (evenly spaced, the same for every run): a few hundred ms for a tiny model
SATURATED = 0.9  # a softmax row whose largest weight is above this is "saturated" (nearly one-hot)
# Final validation loss of the tab's default run (4 x 4 x 128, 500 steps, Python docs) with seeds 1337 / 1 / 2:
# 2.250 / 2.274 / 2.232, a range of 0.042 (benchmarks/bench_train_seeds.py). Without 1/√d_k, minus with it, seed by
# seed: −0.014, +0.021, −0.021. A smaller difference between two runs could change sign with another seed.
SEED_SPREAD = 0.04


@torch.no_grad()
def probe(model, data: torch.Tensor, context: int, windows: int = PROBE_WINDOWS) -> dict:
    """Measured on up to `windows` full windows of `data` (model in eval mode, restored afterwards) -> {
    window_loss: [mean loss of each window], loss, last_loss (mean loss at the last position of each window: no
    later token of the window is visible there, with or without the mask), attn_max (mean largest weight of a
    softmax row), attn_entropy (entropy / ln(keys visible), 1 = uniform), attn_saturated (share of rows with a largest
    weight above SATURATED), resid_growth (RMS of the residual stream after the last block / after the embeddings)}.
    Rows of the first query (which sees only itself under the mask) are left out of the attention numbers."""
    T = min(context, len(data) - 1)
    starts = window_starts(len(data), T, windows)
    x = torch.stack([data[s:s + T] for s in starts])
    y = torch.stack([data[s + 1:s + 1 + T] for s in starts])
    was_training = model.training
    model.eval()
    try:
        logits, _ = model(x)
        lp = target_logprobs(logits, y.to(logits.device)).cpu()  # (W, T)
        attn = model.attention_weights(x)  # one (W, H, T, T) per block
        hidden = model.hidden_states(x)  # embeddings, then after each block: (W, T, C)
    finally:
        model.train(was_training)
    causal = bool(model.config.causal)
    rows = [pattern_scores(a.float().cpu(), causal=causal) for a in attn]
    sat = torch.cat([(a.float().amax(-1)[..., 1:] > SATURATED).reshape(-1) for a in attn]).float().mean()

    def rms(h):
        return float(h.float().pow(2).mean().sqrt())

    return {"window_loss": (-lp.mean(1)).tolist(), "loss": float(-lp.mean()), "last_loss": float(-lp[:, -1].mean()),
            "attn_max": float(torch.stack([r["max_weight"].mean() for r in rows]).mean()),
            "attn_entropy": float(torch.stack([r["entropy_ratio"].mean() for r in rows]).mean()),
            "attn_saturated": float(sat), "resid_growth": rms(hidden[-1]) / max(rms(hidden[0]), 1e-12)}


def paired_se(a: list, b: list) -> float:
    """Standard error of mean(b - a) over paired windows (the same held-out windows scored by two runs): how much of
    a difference in loss the choice of windows alone could make."""
    d = [y - x for x, y in zip(a, b)]
    if len(d) < 2:
        return float("nan")
    m = sum(d) / len(d)
    return math.sqrt(sum((v - m) ** 2 for v in d) / (len(d) - 1) / len(d))
