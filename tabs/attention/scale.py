"""Why divide by sqrt(d_k)? The experiment on random q and k (largest weight, entropy and the softmax's gradient
against d_k, with and without the scale), the loaded model's heads with the scale removed, and the Explain text
that reads both."""
from __future__ import annotations

from functools import lru_cache

from tinygpt.interpret.softmax_scale import scale_experiment

from ..kit.common import new_figure


@lru_cache(maxsize=1)
def random_experiment() -> dict:
    return scale_experiment()


def random_figure():
    """Random q, k: largest weight, entropy and softmax-gradient size against d_k, with and without the scale
    (the same for every model: drawn once when the tab is built)."""
    ex = random_experiment()
    d = ex["d_values"]
    fig = new_figure(12, 3.4)
    for i, (key, title) in enumerate((("max_weight", "mean largest softmax weight"),
                                      ("entropy_ratio", f"entropy / ln({ex['n_keys']})  (1 = uniform)"),
                                      ("jacobian_norm", "softmax Jacobian norm (the gradient)"))):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.plot(d, ex["unscaled"][key], "o-", color="#e03131", label="q·k (no scale)")
        ax.plot(d, ex["scaled"][key], "o-", color="#1c7ed6", label="q·k / √d_k")
        ax.set_xscale("log", base=2)
        ax.set_xticks(d, [str(v) for v in d])
        ax.set_title(f"random q, k:\n{title}", fontsize=10)  # two lines: the three titles never run together
        ax.set(xlabel="d_k")
        ax.grid(alpha=.3)
        ax.legend(fontsize=8)
    return fig


def sharpening_figure(a: dict, name: str):
    """The loaded model's heads with and without the scale: mean entropy and largest weight per layer."""
    sr = a["scale"]
    x = list(range(len(sr["layers"])))
    fig = new_figure(12, 3.2)
    for i, (key, title, unit) in enumerate((("entropy", "mean entropy of its heads", "nats"),
                                            ("max_weight", "mean largest weight of its heads", "weight"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(x, sr["scaled"][key].mean(1).tolist(), "o-", color="#1c7ed6", label="with 1/√d_k (the model)")
        ax.plot(x, sr["unscaled"][key].mean(1).tolist(), "o-", color="#e03131", label="scale removed")
        ax.set_title(f"{name}:\n{title}, per layer", fontsize=10)
        ax.set(xlabel="layer", ylabel=unit)
        ax.set_xticks(x, [str(li) for li in sr["layers"]])
        ax.grid(alpha=.3)
        ax.legend(fontsize=8)
    return fig


def scale_md(a: dict | None, name: str) -> str:
    """The Explain text of the sqrt(d_k) section, reading the live numbers."""
    ex = random_experiment()
    d, u, s = ex["d_values"], ex["unscaled"], ex["scaled"]
    below = [dk for dk, a, b in zip(d, u["jacobian_norm"], s["jacobian_norm"]) if a < b]
    cross = (f" (a moderately peaked softmax passes more gradient than a nearly uniform one, but from d_k = {below[0]}"
             " on the unscaled one passes less than the scaled one)") if below and below[0] != d[0] else ""
    lines = [
        f"**Random q, k** ({ex['n_keys']} keys, entries with variance 1). The raw score q·k has standard deviation"
        f" √d_k: {u['score_std'][0]:.1f} at d_k = {d[0]} and {u['score_std'][-1]:.1f} at d_k = {d[-1]}. Without the"
        f" scale the softmax saturates: the largest weight grows from {u['max_weight'][0]:.2f} to"
        f" **{u['max_weight'][-1]:.2f}** and the entropy falls from {u['entropy'][0]:.2f} to"
        f" **{u['entropy'][-1]:.2f} nats** (uniform: ln {ex['n_keys']} = {ex['max_entropy']:.2f}), i.e. the"
        f" attention becomes one-hot. The softmax's Jacobian (how much a change of the scores moves the weights)"
        f" shrinks from {u['jacobian_norm'][0]:.3f} to **{u['jacobian_norm'][-1]:.4f}**: almost no gradient reaches"
        f" q and k, so training stalls{cross}. Divided by √d_k, the spread stays {min(s['score_std']):.2f}–"
        f"{max(s['score_std']):.2f} at every size, the largest weight {min(s['max_weight']):.2f}–"
        f"{max(s['max_weight']):.2f} and the Jacobian {min(s['jacobian_norm']):.3f}–{max(s['jacobian_norm']):.3f}.",
    ]
    if a is not None:
        m = a["summary"]
        if abs(m["factor"] - 1.0) < 1e-9:
            lines.append(f"**{name}** was built without the 1/√d_k scale (an ablation), so removing it changes"
                         " nothing here.")
        else:
            rel = (m["entropy_scaled"] - m["entropy_unscaled"]) / max(m["entropy_scaled"], 1e-12)
            lines.append(
                f"**{name}** (head size {m['head_dim']}, so removing the scale multiplies its scores by"
                f" √{m['head_dim']} = {m['factor']:.1f}): the mean entropy of its heads falls from"
                f" {m['entropy_scaled']:.3f} to **{m['entropy_unscaled']:.3f} nats** ({rel:.0%} lower) and the mean"
                f" largest weight rises from {m['max_weight_scaled']:.3f} to"
                f" **{m['max_weight_unscaled']:.3f}**; {m['sharper_share']:.0%} of the heads get sharper. Most changed:"
                f" layer {m['most_layer']} head {m['most_head']}, from {m['most_before']:.3f} to"
                f" {m['most_after']:.3f} nats (pick the view '1/√d_k removed' to see it). The model learned its"
                " weights *with* the scale, so without it the same q and k give a far peakier, harder-to-train"
                " softmax.")
    return "\n\n".join(lines)
