"""The analysed prompt in words and numbers: every head's pattern scores as a table, the strongest head of each
pattern against what uniform attention would give, and what the causal mask takes away from one head."""
from __future__ import annotations

import pandas as pd

from tinygpt.interpret.attention import PATTERN_THRESHOLD, future_weight, raw_scores, softmax_weights


def scores_frame(a: dict) -> pd.DataFrame:
    rows = [[r["layer"], r["head"], r["pattern"], round(r["previous"], 3), round(r["first"], 3), round(r["self"], 3),
             round(r["max_weight"], 3), round(r["entropy"], 3), round(r["entropy_ratio"], 3),
             round(r["entropy_unscaled"], 3), round(r["max_weight_unscaled"], 3)] for r in a["rows"]]
    return pd.DataFrame(rows, columns=["layer", "head", "pattern", "previous token", "first token (sink)", "self",
                                       "max weight", "entropy (nats)", "entropy / uniform", "entropy w/o 1/√d_k",
                                       "max weight w/o 1/√d_k"])


def patterns_md(a: dict) -> str:
    """The strongest head of each pattern, with its numbers, against what uniform attention would give."""
    rows, T = a["rows"], a["T"]
    uniform = sum(1 / (i + 1) for i in range(1, T)) / max(1, T - 1) if a["causal"] else 1 / T
    lines = [f"**Strongest heads by pattern** (means over queries 1 … T−1; a head spreading its weight uniformly"
             f" over what it may see would give **{uniform:.0%}** to each of these):", ""]
    for key, what, why in (
            ("previous", "previous-token", "copies information from the token just before (half of an induction"
                                           " circuit)"),
            ("first", "first-token (attention sink)", "parks its weight on token 0 when it has nothing to look for"),
            ("self", "self / diagonal", "looks at its own token")):
        r = max(rows, key=lambda r: r[key])
        verdict = (f"it {why}" if r[key] > PATTERN_THRESHOLD else
                   f"no head of this model is dominated by this pattern on this prompt (above {PATTERN_THRESHOLD:.0%})")
        lines.append(f"* **{what}**: layer {r['layer']}, head {r['head']} puts **{r[key]:.0%}** of its weight"
                     f" there on average ({r[key] / max(uniform, 1e-12):.1f}× uniform): {verdict}.")
    counts = pd.Series([r["pattern"] for r in rows]).value_counts()
    lines.append("* Heads by name: " + ", ".join(f"{n} **{k}**" for k, n in counts.items()) +
                 " (a head is named after a pattern holding more than half its weight; 'broad' spreads almost"
                 " uniformly).")
    return "\n".join(lines)


def mask_md(model, a: dict, layer: int, head: int, query: int) -> str:
    """What the mask takes away, for the chosen head: the weight the unmasked softmax gives to later keys."""
    if not a["causal"]:
        return ("This model was trained **without** a causal mask: every position already sees the whole prompt,"
                " so 'mask on' and 'mask off' are the same weights.")
    q, k = a["qk"][layer]
    un = softmax_weights(raw_scores(q[head], k[head]), model.transformer.h[layer].attn.scale, causal=False)
    fut = future_weight(un)  # (T,)
    T = a["T"]
    mean = float(fut[:-1].mean()) if T > 1 else 0.0
    this = (f"query {query}, the last token, has no later tokens" if query == T - 1 else
            f"query {query}: {float(fut[query]):.0%}")
    return (f"**The causal mask, layer {layer} head {head}.** With the mask, query *i* spreads its weight over keys"
            f" 0 … *i* only; every cell above the diagonal is exactly 0. Without it (softmax over all {T} keys), the"
            f" queries would put on average **{mean:.0%}** of their weight on *later* tokens ({this}). The model"
            " never trained that way, so this is what position *i* could see, not what it does; a model trained"
            " without the mask learns to read the next token directly and its"
            " loss collapses (Train from scratch, run B).")
