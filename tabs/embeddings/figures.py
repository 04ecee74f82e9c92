"""The Embeddings tab's matplotlib figures: the two cosine heatmaps (common vs rare words), the whole vocabulary
(norm against token id, a PCA map), and one word's cosine between contexts layer by layer."""
from __future__ import annotations

import torch

from tinygpt.interpret.embeddings import pca_2d, vocab_norms

from ..kit.common import new_figure


def heatmap_figure(a):
    fig = new_figure(11, 4.6)
    offdiag = [float(v) for d in a["groups"].values() for i, row in enumerate(d["cos"].tolist())
               for j, v in enumerate(row) if i != j]
    lo = min([0.0] + offdiag)  # one shared colour scale so the two groups can be compared by eye
    for k, (g, d) in enumerate(a["groups"].items()):
        ax = fig.add_subplot(1, 2, k + 1)
        m = d["cos"].numpy()
        im = ax.imshow(m, cmap="viridis", vmin=lo, vmax=1.0)
        labels = [r["word"] for r in d["rows"]]
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=9)
        ax.set_yticks(range(len(labels)), labels, fontsize=9)
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if m[i, j] > lo + 0.6 * (1 - lo) else "white")
        ax.set_title(f"{g} words: mean norm {d['mean_norm']:.3f}, mean cosine {d['mean_cos']:.3f}", fontsize=10)
    fig.colorbar(im, ax=fig.axes, shrink=0.8, label="cosine similarity")
    return fig


def vocab_figure(model, tok, a):
    """Left: every token's norm against its id. Right: a PCA map of a fixed sample, chosen tokens labelled."""
    fig = new_figure(12, 4.8)
    norms = vocab_norms(model)
    V = norms.numel()
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(range(V), norms.numpy(), ",", color="#9aa5b1", alpha=0.6, rasterized=True)
    nb = min(50, V)  # a median line: the trend is hard to see in a cloud of 50k points
    edges = torch.linspace(0, V, nb + 1).long().tolist()
    mids = [(lo + hi) / 2 for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
    meds = [float(norms[lo:hi].median()) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
    ax.plot(mids, meds, color="black", lw=1.2, label="median norm per id bin")
    colours = {"common": "#1c7ed6", "rare": "#e03131"}
    chosen = []
    for g, d in a["groups"].items():
        ids = [i for r in d["rows"] for i in r["ids"]]
        pieces = [p for r in d["rows"] for p in r["pieces"]]
        ax.scatter(ids, norms[ids].numpy(), s=28, color=colours[g], label=f"{g} tokens", zorder=3)
        for i, p in dict(zip(ids, pieces)).items():  # each distinct token labelled once
            ax.annotate(repr(p)[1:-1], (i, float(norms[i])), fontsize=7, xytext=(3, 3), textcoords="offset points")
        chosen += [(i, p, g) for i, p in zip(ids, pieces)]
    ax.set_xlabel("token id (GPT-2: roughly merge order, so earlier = more frequent)")
    ax.set_ylabel("L2 norm of the wte row")
    ax.set_title(f"Norm of all {V:,} token embeddings", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax2 = fig.add_subplot(1, 2, 2)
    p = pca_2d(model, [c[0] for c in chosen])
    xy = p["xy"].numpy()
    ax2.scatter(xy[:, 0], xy[:, 1], s=3, color="#ced4da", rasterized=True, label=f"{len(xy):,} sampled tokens")
    cxy = p["chosen_xy"].numpy()
    for (_, piece, g), (x, y) in zip(chosen, cxy):
        ax2.scatter([x], [y], s=28, color=colours[g], zorder=3)
        ax2.annotate(repr(piece)[1:-1], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ex = p["explained"]
    ax2.set_xlabel(f"PC1 ({ex[0]:.1%} of variance)")
    ax2.set_ylabel(f"PC2 ({ex[1]:.1%} of variance)")
    ax2.set_title("2-D PCA of wte (fixed seeded sample)", fontsize=10)
    ax2.legend(fontsize=8, loc="upper right")
    return fig


def contextual_figure(res, who: str = ""):
    fig = new_figure(9, 4.2)
    ax = fig.add_subplot(111)
    cos, S = res["cos"], len(res["sentences"])
    xs = list(range(len(res["layers"])))
    for i in range(S):
        for j in range(i + 1, S):
            ax.plot(xs, cos[:, i, j].tolist(), marker="o", lw=1.2, label=f"sentence {i + 1} vs {j + 1}")
    ax.plot(xs, res["mean_cos"], color="black", lw=2.2, label="mean over pairs")
    ax.plot(xs, res["baseline"], color="#868e96", ls="--", lw=1.5, label="baseline: word vs other tokens")
    ax.set_xticks(xs, res["layers"], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("cosine similarity")
    ax.set_title(f"{who + ': ' if who else ''}{res['word']!r} in {S} sentences: static row, then the hidden state"
                 " after each block", fontsize=10)
    ax.axhline(1.0, color="#ced4da", lw=0.8)
    ax.legend(fontsize=8, loc="best")
    return fig
