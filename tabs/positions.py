"""Positions tab: how a transformer knows where a token is. The sinusoidal table and its dot product against
distance for several sizes d; the loaded model's learned position embeddings `wpe` (cosine between positions);
RoPE: the q.k score of two fixed vectors over all (m, n) (it depends only on m - n: the largest deviation is
printed), one 2-D pair turning with the position, and RoPE's long-distance decay bound."""
from __future__ import annotations

import math
import re
from functools import partial

import gradio as gr
import torch
import torch.nn.functional as F

from tinygpt.defaults import POSITIONS
from tinygpt.interpret.positions import (
    dot_by_distance,
    position_similarity,
    rope_decay_bound,
    rope_frequencies,
    rope_pair_rotation,
    rope_relative_deviation,
    rope_score_matrix,
    sinusoidal_encoding,
)

from .kit.registry import register
from .kit.common import (
    UserError,
    banner,
    clamp_int,
    get_model,
    model_card,
    model_picker,
    new_figure,
    parse_float,
    user_errors,
)

D = POSITIONS  # the tab's start-up values (tinygpt.defaults)
DEFAULT_DIMS = D["dims"]
MAX_DIMS = 6
COLORS = ["#1c7ed6", "#e8590c", "#2b8a3e", "#ae3ec9", "#f08c00", "#495057"]


def parse_dims(text) -> list[int]:
    """'16, 64, 256' -> [16, 64, 256]: even sizes from 2 to 4096, at most MAX_DIMS of them."""
    parts = [p for p in re.split(r"[,\s]+", str(text or "")) if p]
    if not parts:
        raise UserError("Enter at least one size d, e.g. 16, 64, 256.")
    if len(parts) > MAX_DIMS:
        raise UserError(f"At most {MAX_DIMS} sizes, please (got {len(parts)}).")
    dims = []
    for p in parts:
        try:
            d = int(p)
        except ValueError:
            raise UserError(f"Sizes must be whole numbers like 16, 64, 256 (got {p!r}).") from None
        if not 2 <= d <= 4096 or d % 2:
            raise UserError(f"Each size d must be an even number from 2 to 4096 (got {d}).")
        dims.append(d)
    return dims


def half_distance(curve: list[float]) -> int | None:
    """The first distance at which PE(i).PE(j) falls below half its value at distance 0 (None if never)."""
    for k, v in enumerate(curve):
        if v < curve[0] / 2:
            return k
    return None


def sinusoidal_section(n: int, d_map: int, dims: list[int]):
    """(figure, numbers): the (positions x dims) table for d_map, and PE(i).PE(j) against |i - j| for each d."""
    pe = sinusoidal_encoding(n, d_map)
    curves = {d: (dot_by_distance(sinusoidal_encoding(n, d)) / (d / 2)).tolist() for d in dims}  # 1 at distance 0
    fig = new_figure(11, 3.8)
    ax1, ax2 = fig.add_subplot(121), fig.add_subplot(122)
    im = ax1.imshow(pe.numpy(), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax1.set(title=f"sinusoidal PE, {n} positions × d = {d_map}", xlabel="dimension (even: sin, odd: cos)",
            ylabel="position")
    fig.colorbar(im, ax=ax1, shrink=0.8)
    for i, (d, c) in enumerate(curves.items()):
        ax2.plot(range(n), c, color=COLORS[i % len(COLORS)], lw=1.3, label=f"d = {d}")
    ax2.axhline(0, color="#adb5bd", lw=0.8)
    ax2.set(title="PE(i)·PE(j) / (d/2) against the distance |i − j|", xlabel="|i − j|", ylabel="normalised dot")
    ax2.grid(alpha=.3)
    ax2.legend(fontsize=8)
    nums = {d: {"d1": c[1] if n > 1 else 1.0, "d10": c[10] if n > 10 else None, "half": half_distance(c),
                "far": sum(c[n // 2:]) / max(1, len(c[n // 2:]))} for d, c in curves.items()}
    return fig, nums


def wpe_section(model, name: str):
    """(figure or None, text): the cosine similarity between the model's learned position vectors."""
    c = model.config
    if c.pos_encoding != "learned" or getattr(model.transformer, "wpe", None) is None:
        how = {"rope": "positions enter by rotating q and k in every attention layer (RoPE)",
               "sinusoidal": "it adds the fixed sinusoidal table above instead",
               "none": "it has no positional encoding at all: only the causal mask tells positions apart"}
        return None, (f"**{name} has no learned `wpe`** (pos_encoding = {c.pos_encoding}): "
                      f"{how.get(c.pos_encoding, 'no position table')}.")
    w = model.transformer.wpe.weight.detach().float()  # (block, C)
    cos = position_similarity(w)  # (P, P)
    by_dist = dot_by_distance(F.normalize(w, dim=-1))  # (P,) mean cosine per distance
    P = w.shape[0]
    fig = new_figure(11, 4.0)
    ax1, ax2 = fig.add_subplot(121), fig.add_subplot(122)
    im = ax1.imshow(cos.numpy(), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax1.set(title=f"{name}: cosine between learned wpe rows ({P} positions)", xlabel="position j",
            ylabel="position i")
    fig.colorbar(im, ax=ax1, shrink=0.8)
    ax2.plot(range(P), by_dist.tolist(), color="#1c7ed6")
    ax2.axhline(0, color="#adb5bd", lw=0.8)
    ax2.set(title="mean cosine against the distance |i − j|", xlabel="|i − j|", ylabel="cosine")
    ax2.grid(alpha=.3)
    norms = w.norm(dim=-1)
    tenth = max(1, P // 10)
    d1 = float(by_dist[1]) if P > 1 else 1.0
    far = float(by_dist[P // 2:].mean()) if P > 1 else 1.0
    text = (f"**{name}'s learned `wpe`** ({P} positions × {c.n_embd}): neighbouring positions have a mean cosine of"
            f" **{d1:.2f}**, positions half the context apart **{far:.2f}** on average. Nobody told the model that"
            " position 7 is near position 8: it learned it from data, as a smooth band along the diagonal."
            f" Row norms range from {float(norms.min()):.2f} to {float(norms.max()):.2f}; position 0 has"
            f" {float(norms[0]):.2f}, the first tenth of positions {float(norms[:tenth].mean()):.2f} on average and"
            f" the last tenth {float(norms[-tenth:].mean()):.2f}.")
    return fig, text


def rope_section(head_dim: int, base: float, n: int, pair: int, seed: int):
    """(figure, numbers): RoPE scores over (m, n), the same vectors with additive sinusoidal positions, one pair
    turning, and the decay bound."""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(head_dim, generator=g), torch.randn(head_dim, generator=g)
    S = rope_score_matrix(q, k, n, base)  # (n, n)
    dev = rope_relative_deviation(S)
    pe = sinusoidal_encoding(n, head_dim)
    S_abs = (q + pe) @ (k + pe).T  # absolute positions added to q and k: not a function of m - n
    dev_abs = rope_relative_deviation(S_abs)
    half = head_dim // 2
    theta = float(rope_frequencies(head_dim, base)[pair])
    pos = torch.arange(n)
    xy = rope_pair_rotation((float(q[pair]), float(q[pair + half])), pos, theta)  # (n, 2)
    max_dist = max(n, 1024)
    bound = rope_decay_bound(head_dim, max_dist, base)
    fig = new_figure(12, 7.2)
    ax1, ax2, ax3, ax4 = (fig.add_subplot(2, 2, i) for i in (1, 2, 3, 4))
    lim = float(max(S.abs().max(), S_abs.abs().max()))
    im = ax1.imshow(S.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax1.set(title=f"RoPE: q·k at positions (m, n), largest deviation {dev:.1e}", xlabel="key position n",
            ylabel="query position m")
    fig.colorbar(im, ax=ax1, shrink=0.8)
    im = ax2.imshow(S_abs.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax2.set(title=f"same q, k + sinusoidal PE: deviation {dev_abs:.1f}", xlabel="key position n",
            ylabel="query position m")
    fig.colorbar(im, ax=ax2, shrink=0.8)
    r = float(xy[0].norm())
    t = torch.linspace(0, 2 * math.pi, 200)
    ax3.plot((r * t.cos()).tolist(), (r * t.sin()).tolist(), color="#dee2e6", lw=1)
    show = min(n, 32)
    ax3.plot(xy[:show, 0].tolist(), xy[:show, 1].tolist(), "o", color="#e8590c", ms=4)
    for p in (0, 1):  # the angle of one step, from the centre
        ax3.plot([0, float(xy[p, 0])], [0, float(xy[p, 1])], color="#495057", lw=1)
    for p in range(0, show, max(1, show // 8)):
        ax3.annotate(str(p), (float(xy[p, 0]), float(xy[p, 1])), fontsize=8, xytext=(4, 4),
                     textcoords="offset points")
    ax3.set_aspect("equal")
    ax3.set(title=f"pair {pair} of q (coordinates {pair}, {pair + half}) at positions 0–{show - 1}\n"
                  f"turns θ = {theta:.3g} rad per position", xlabel=f"q[{pair}]", ylabel=f"q[{pair + half}]")
    ax3.grid(alpha=.3)
    ax4.plot(range(max_dist + 1), bound, color="#1c7ed6")
    ax4.set(title=f"RoPE long-term decay bound (head size {head_dim}, base {base:g})", xlabel="relative distance m − n",
            ylabel="relative upper bound of |q·k|")
    ax4.grid(alpha=.3)
    nums = {"dev": dev, "dev_abs": dev_abs, "theta": theta, "pair": pair, "half": half, "scale": lim,
            "bound0": bound[0], "bound_n": bound[min(n, max_dist)], "bound_far": bound[-1], "max_dist": max_dist,
            "n": min(n, max_dist),
            "period": 2 * math.pi / theta if theta > 0 else float("inf"),
            "slowest": float(rope_frequencies(head_dim, base)[-1])}
    return fig, nums


def explain(sin_nums: dict, d_map: int, n: int, rope: dict, head_dim: int, base: float) -> str:
    lines = ["### What the numbers say", "",
             f"* **Sinusoidal.** Each pair of columns turns at its own speed, from 1 radian per position (columns 0,"
             f" 1) down to 1/10000^((d−2)/d): fast columns tell neighbours apart, slow ones tell far positions apart"
             f" (the heatmap, d = {d_map}). PE(i)·PE(j) = Σ cos((i−j)·ωₖ) depends only on the distance:"]
    for d, v in sin_nums.items():
        half = f"falls below half at distance **{v['half']}**" if v["half"] is not None else \
            f"stays above half over all {n} positions"
        ten = f", {v['d10']:.2f} at 10" if v["d10"] is not None else ""
        lines.append(f"  * d = {d}: the normalised dot {v['d1']:.3f} at distance 1{ten}; it {half}; mean over the far"
                     f" half {v['far']:.2f}.")
    halves = [sin_nums[d]["half"] if sin_nums[d]["half"] is not None else n + 1 for d in sorted(sin_nums)]
    if len(halves) > 1 and halves == sorted(halves):
        lines.append("  A larger d adds slower-turning pairs, so the dot product decays more slowly with distance.")
    lines.append(
        f"* **RoPE** (head size {head_dim}, base {base:g}): q·k after turning q by m·θᵢ and k by n·θᵢ equals the"
        f" original q·k with each pair turned by (m−n)·θᵢ, so the score matrix is constant along every diagonal:"
        f" the largest deviation from a pure m − n dependence is **{rope['dev']:.1e}** (float32 rounding; scores"
        f" are of size {rope['scale']:.0f}). Adding sinusoidal positions to the same q and k instead gives a"
        f" deviation of **{rope['dev_abs']:.1f}**: absolute encodings do not make the score relative.")
    lines.append(
        f"* **One pair turning.** Pair {rope['pair']} (coordinates {rope['pair']} and {rope['pair'] + rope['half']})"
        f" turns by θ = {rope['theta']:.3g} rad per position (a full turn every {rope['period']:.1f} positions);"
        f" the slowest pair turns by {rope['slowest']:.2e} rad per position. Its length never changes: RoPE only"
        " rotates.")
    lines.append(
        f"* **Decay bound** (RoFormer §3.4.3): the relative bound on |q·k| is {rope['bound0']:.1f} at distance 0,"
        f" {rope['bound_n']:.2f} at distance {rope['n']} and {rope['bound_far']:.2f} at"
        f" {rope['max_dist']}: far-apart tokens can interact less strongly, a built-in preference for nearby"
        " context.")
    return "\n".join(lines)


@user_errors
def on_positions(models, name, n_positions=D["n_positions"], d_map=D["d_map"], dims=DEFAULT_DIMS,
                 head_dim=D["head_dim"], base=D["base"], rope_positions=D["rope_positions"], pair=D["pair"],
                 seed=D["seed"]):
    """(sinusoidal figure, wpe figure, wpe text, RoPE figure, explanation, notes)."""
    notes: list = []
    n = clamp_int(n_positions, 2, 2048, "Positions", notes)
    d_map = clamp_int(d_map, 2, 1024, "d (heatmap)", notes)
    if d_map % 2:
        raise UserError(f"The size d of the heatmap must be even (got {d_map}).")
    dim_list = parse_dims(dims)
    hd = clamp_int(head_dim, 2, 512, "Head size", notes)
    if hd % 2:
        raise UserError(f"RoPE turns pairs of numbers, so the head size must be even (got {hd}).")
    b = parse_float(base, "RoPE base", 1.0001, 1e9)
    rn = clamp_int(rope_positions, 2, 512, "RoPE positions", notes)
    p = clamp_int(pair, 0, hd // 2 - 1, "Pair", notes)
    s = clamp_int(seed, 0, 2**31 - 1, "Seed", notes)
    model, _ = get_model(models, name)
    info = getattr(model, "info", None)
    mname = info.name if info else "model"
    sin_fig, sin_nums = sinusoidal_section(n, d_map, dim_list)
    wpe_fig, wpe_text = wpe_section(model, mname)
    rope_fig, rope_nums = rope_section(hd, b, rn, p, s)
    return (sin_fig, wpe_fig, wpe_text, rope_fig, explain(sin_nums, d_map, n, rope_nums, hd, b), " ".join(notes))


@user_errors
def on_model(models, name):
    model, _ = get_model(models, name)
    return banner(model), model_card(model)


def build(models, default_model: str = "gpt2"):
    """The Positions tab. `models` is the shared tinygpt.ModelCache."""
    with gr.Tab("Positions", id="positions"):
        gr.Markdown("Attention by itself does not know the order of the tokens. Four ways to tell it: a fixed"
                    " **sinusoidal** table, **learned** position vectors (GPT-2's `wpe`), **RoPE** (turn q and k by"
                    " the position) or **nothing** (only the causal mask). Train them side by side on *Train from"
                    " scratch* (Position encoding per run).")
        model_dd, _, banner_md, card_md, model0 = model_picker(models, default_model)
        with gr.Row():
            n_pos = gr.Slider(16, 1024, D["n_positions"], step=16, label="Positions", elem_id="pos-n")
            d_map = gr.Slider(8, 512, D["d_map"], step=8, label="d of the heatmap", elem_id="pos-d")
            dims = gr.Textbox(DEFAULT_DIMS, label="Sizes d to compare (the decay)", elem_id="pos-dims")
        with gr.Row():
            head_dim = gr.Slider(4, 256, D["head_dim"], step=2, label="RoPE head size", elem_id="pos-hd")
            base = gr.Number(D["base"], label="RoPE base", elem_id="pos-base")
            rope_n = gr.Slider(8, 256, D["rope_positions"], step=8, label="RoPE positions (m, n)",
                               elem_id="pos-rope-n")
            pair = gr.Slider(0, D["head_dim"] // 2 - 1, D["pair"], step=1, label="Pair to draw (0 = fastest)",
                             elem_id="pos-pair")
            seed = gr.Number(D["seed"], label="Seed of q and k", precision=0, elem_id="pos-seed")
        go = gr.Button("Show positions", variant="primary", elem_id="pos-go")
        # the default settings drawn once at start-up: the page opens on the figures, not on empty boxes
        sin0, wpe0, wpe_text0, rope0, explain0, notes0 = on_positions(models, model0.info.name)
        notes = gr.Markdown(notes0, elem_id="pos-notes")
        sin_plot = gr.Plot(sin0, label="Sinusoidal encoding", elem_id="pos-sin")
        gr.Markdown("### The loaded model's learned position embeddings")
        wpe_text = gr.Markdown(wpe_text0, elem_id="pos-wpe-text")
        wpe_plot = gr.Plot(wpe0, label="Learned wpe", elem_id="pos-wpe")
        gr.Markdown("### RoPE")
        rope_plot = gr.Plot(rope0, label="Rotary position embedding", elem_id="pos-rope")
        with gr.Accordion("Explain", open=True):
            explain_md = gr.Markdown(explain0, elem_id="pos-explain")
        inputs = [model_dd, n_pos, d_map, dims, head_dim, base, rope_n, pair, seed]
        outputs = [sin_plot, wpe_plot, wpe_text, rope_plot, explain_md, notes]
        go.click(partial(on_positions, models), inputs, outputs, api_name="positions", concurrency_id="model")
        model_dd.change(partial(on_model, models), [model_dd], [banner_md, card_md], api_visibility="private")
        head_dim.release(lambda hd: gr.update(maximum=max(1, int(hd) // 2 - 1)), [head_dim], [pair],
                         api_visibility="private", queue=False)
        register("positions", fields={
            "model": model_dd, "n_positions": n_pos, "d_map": d_map, "dims": dims, "head_dim": head_dim,
            "base": base, "rope_positions": rope_n, "pair": pair, "seed": seed}, run=go)
