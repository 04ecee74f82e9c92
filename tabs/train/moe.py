"""The Train tab's Mixture-of-Experts views: each run's MoE settings checked, the expert load drawn over
training, the part of Explain that reads it, the text's tokens coloured by the expert that took them, and the
presets (dense vs MoE with equal active parameters, MoE with vs without the load-balancing loss)."""
from __future__ import annotations

import html

import gradio as gr

from tinygpt.moe import token_experts

from ..kit.common import UserError, clamp_int, parse_float, user_errors
from ..kit.sessions import SessionStore
from .probe import SEED_SPREAD

EXPERT_COLORS = ["#4dabf7", "#ff922b", "#69db7c", "#da77f2", "#ffd43b", "#ff8787", "#38d9a9", "#a9a9a9"]
MAX_EXPERTS = len(EXPERT_COLORS)


def check_moe(name, experts, top_k, aux, notes) -> tuple:
    """(n_experts, moe_top_k, moe_aux_weight) of one run, checked. Raises UserError."""
    e = clamp_int(experts, 0, MAX_EXPERTS, f"Run {name} experts", notes)
    if e == 1:
        raise UserError(f"Run {name}: experts must be 0 (a dense MLP) or at least 2.")
    k = clamp_int(top_k, 1, max(e, 1), f"Run {name} top-k", notes) if e else 1
    return e, k, parse_float(aux, f"Run {name} load-balancing weight", 0.0, 10.0)


def draw_load(ax, hist: list, cfg, name: str) -> None:
    """One MoE run's expert load over training: a group of bars per evaluation, one bar per layer, split into
    the experts' shares of the fixed validation windows (a collapsed layer is a bar of one colour)."""
    evs = [e for e in hist if e.get("expert_load")]
    E, L = cfg.n_experts, cfg.n_layer
    width = 0.8 / L
    for g, ev in enumerate(evs):
        for layer, shares in enumerate(ev["expert_load"]):
            bottom = 0.0
            for e, frac in enumerate(shares):
                ax.bar(g - 0.4 + (layer + 0.5) * width, frac, width * 0.9, bottom=bottom, color=EXPERT_COLORS[e],
                       label=f"expert {e}" if (g, layer) == (0, 0) else None)
                bottom += frac
    for e in range(1, E):
        ax.axhline(e / E, color="k", lw=.5, ls=":", alpha=.6)
    ticks = list(range(0, len(evs), max(1, len(evs) // 6)))
    ax.set_xticks(ticks, [str(evs[g]["step"]) for g in ticks])
    ax.set(title=f"run {name}: expert load, a bar per layer (balanced: {1 / E:.0%} each)", xlabel="step",
           ylabel="share of validation tokens", ylim=(0, 1.02))
    if evs:
        ax.legend(fontsize=7, loc="lower left", ncol=E)


def explain_moe(res: dict, cfgs: dict) -> str:
    """The Mixture-of-Experts part of the explanation, read from the finished runs (empty without an MoE)."""
    moe = [k for k, c in cfgs.items() if c.n_experts]
    if not moe:
        return ""
    lines = ["", "### Mixture-of-Experts", "",
             "| run | parameters (total) | active per token | final val loss | tokens/s | busiest expert | idlest |",
             "|---|---|---|---|---|---|---|"]
    for k in res:
        r = res[k]
        load = r.get("expert_load")
        busy = max(max(row) for row in load) if load else None
        idle = min(min(row) for row in load) if load else None
        lines.append(f"| {k} | {r['params_total']:,} | {r['params_active']:,} | {r['val_loss']:.3f} | "
                     f"{r['tokens_per_s']:,.0f} | {'' if busy is None else f'{busy:.0%}'} | "
                     f"{'' if idle is None else f'{idle:.0%}'} |")
    lines.append("")
    for k in moe:
        c, load = cfgs[k], res[k]["expert_load"]
        E, busy, idle = c.n_experts, max(max(row) for row in load), min(min(row) for row in load)
        shares = "; ".join(f"layer {i}: " + " / ".join(f"{s:.0%}" for s in row) for i, row in enumerate(load))
        if busy >= 0.9:
            verdict = (f"has **collapsed**: one expert takes {busy:.0%} of the tokens in a layer, so the other experts "
                       "get almost no gradient and stay untrained (a self-reinforcing loop the router cannot leave).")
        elif busy >= 2.0 / E or idle < 0.4 / E:
            verdict = (f"is **unbalanced**: the busiest expert takes {busy:.0%} and the idlest {idle:.0%} of a layer's "
                       f"tokens (balanced: {1 / E:.0%} each).")
        else:
            verdict = (f"is **balanced**: every expert takes between {idle:.0%} and {busy:.0%} of a layer's tokens "
                       f"(perfect balance: {1 / E:.0%} each).")
        aux = (f"with the load-balancing loss at weight {c.moe_aux_weight:g}" if c.moe_aux_weight
               else "**without** the load-balancing loss")
        lines.append(f"* Run {k} ({E} experts, top-{c.moe_top_k}, {aux}) {verdict} Final shares of 64 validation "
                     f"windows — {shares}.")
    if len(moe) == 2 and cfgs["A"].moe_aux_weight != cfgs["B"].moe_aux_weight:
        on, off = sorted(moe, key=lambda k: -cfgs[k].moe_aux_weight)
        b_on = max(max(row) for row in res[on]["expert_load"])
        b_off = max(max(row) for row in res[off]["expert_load"])
        agree = ("the balanced run is the one with the loss, as theory predicts" if b_on < b_off - 0.05 else
                 "this run does not show the difference (collapse is not certain in a short run: try more steps or "
                 "another seed)")
        lines.append(f"* The auxiliary loss E·Σ f_e·P_e (Switch Transformer) is smallest when the load is uniform: "
                     f"with it, run {on}'s busiest expert takes {b_on:.0%}; with weight "
                     f"{cfgs[off].moe_aux_weight:g}, run {off}'s takes {b_off:.0%}: {agree}.")
    if len(moe) == 1 and len(res) == 2:
        m = moe[0]
        d = "A" if m == "B" else "B"
        if abs(res[d]["params_total"] - res[m]["params_active"]) <= 0.01 * res[m]["params_active"]:
            lm, ld = res[m]["val_loss"], res[d]["val_loss"]
            if abs(lm - ld) <= SEED_SPREAD:
                ranking = (f"Here the two end within the seed-to-seed spread ({SEED_SPREAD:.2f}) of each other "
                           f"({lm:.3f} MoE vs {ld:.3f} dense): this run cannot rank them.")
            else:
                better = m if lm < ld else d
                ranking = (f"Here run {better} ({'the MoE' if better == m else 'dense'}) ends with the lower "
                           f"validation loss ({lm:.3f} MoE vs {ld:.3f} dense)"
                           + (", as the extra parameters promise." if better == m else
                              ": the extra parameters did not pay off at this scale and length (each expert sees "
                              "only part of the tokens, so it trains on fewer of them)."))
            tm, td = res[m]["tokens_per_s"], res[d]["tokens_per_s"]
            speed = (f"On this machine the MoE trained {'slower' if tm < td else 'faster'} per token "
                     f"({tm:,.0f} vs {td:,.0f} tokens/s)"
                     + (": routing and the per-expert loop cost time that a FLOP count does not show." if tm < td
                        else "."))
            lines.append(f"* **Equal active parameters** ({res[d]['params_total']:,} vs {res[m]['params_active']:,}): "
                         f"both runs spend about the same multiply-adds per token, but the MoE holds "
                         f"{res[m]['params_total'] / res[m]['params_active']:.1f}× more parameters in total. "
                         f"{ranking} {speed}")
    return "\n".join(lines)


def ffn_column(name: str) -> tuple:
    """One run's feed-forward settings: (experts, top-k, load-balancing weight); 0 experts is a dense MLP."""
    with gr.Column():
        gr.Markdown(f"**Run {name}: feed-forward layer**")
        return (gr.Slider(0, MAX_EXPERTS, 0, step=1, label="experts (0 = dense MLP)",
                          elem_id=f"tr-{name.lower()}-experts"),
                gr.Slider(1, 4, 1, step=1, label="top-k (experts per token)"),
                gr.Number(0.01, label="load-balancing loss weight"))


ROUTE_CSS = "display:inline;white-space:pre-wrap;font-family:var(--font-mono);border-radius:3px"


def routing_html(model, tok, text: str, name: str) -> str:
    """The text's tokens, once per MoE layer, each on the colour of the expert the router sent it to
    (hover: expert and gate probability)."""
    ids = tok.encode(text)
    if not ids:
        raise UserError("Type some text to route.")
    r = token_experts(model, ids)
    cut = len(ids) - len(r["ids"])
    E = model.config.n_experts
    legend = " ".join(f"<span style='background:{EXPERT_COLORS[e]};padding:0 6px;border-radius:3px'>expert {e}</span>"
                      for e in range(E))
    rows = []
    for layer, (choice, gate) in enumerate(zip(r["choice"], r["gate"])):
        spans = []
        for i, e, g in zip(r["ids"], choice, gate):
            piece = tok.piece(i)
            shown = html.escape(piece).replace("\n", "↵<br>")
            spans.append(f"<span style='background:{EXPERT_COLORS[e]};{ROUTE_CSS}' "
                         f"title='expert {e}, gate {g:.2f}'>{shown}</span>")
        share = " / ".join(f"{choice.count(e) / len(choice):.0%}" for e in range(E))
        rows.append(f"<div class='tg-sample' style='margin-top:6px'><div class='tg-sample-h'>run {name}, layer {layer} "
                    f"(shares {share})</div>{''.join(spans)}</div>")
    note = f" (first {len(r['ids'])} tokens: the model's context; {cut} more not shown)" if cut else ""
    return (f"<div class='tg-status'><b>Run {html.escape(name)}</b>: which expert took each token{note} · "
            f"{legend}</div>" + "".join(rows))


@user_errors
def on_route(sessions: SessionStore, text, request: gr.Request = None, quiet: bool = False):
    """The text (empty: each MoE run's own prompt and sample) coloured by expert, for every trained MoE run.
    quiet: return "" instead of an error when no MoE run was trained (the step that follows training)."""
    entry = sessions.get(request)
    runs = {k: v for k, v in (entry.get("trained") or {}).items() if v[0].config.n_experts}
    if not runs:
        if quiet:
            return ""
        raise UserError("Train a run with experts first (set experts to 2 or more for run A or B).")
    text = text if isinstance(text, str) else ""
    parts = []
    for k, (model, tok) in runs.items():
        t = text if text.strip() else entry.get("routing_texts", {}).get(k, "")
        parts.append(routing_html(model, tok, t, k))
    return "".join(parts)


PRESETS = {
    "dense vs MoE": dict(a_experts=0, a_top_k=1, a_aux=0.01, b_experts=4, b_top_k=1, b_aux=0.01, match_active=True),
    "aux on vs off": dict(a_experts=4, a_top_k=1, a_aux=0.01, b_experts=4, b_top_k=1, b_aux=0.0, match_active=False),
}


PRESET_KEYS = ("a_causal", "a_ln", "a_scale", "b_causal", "b_ln", "b_scale", "a_experts", "a_top_k", "a_aux",
               "b_experts", "b_top_k", "b_aux", "match_active")


def preset_values(name: str) -> tuple:
    """The form values of a preset, in PRESET_KEYS order: both runs full models (mask, LayerNorm, scaling on)."""
    return tuple({**dict.fromkeys(PRESET_KEYS[:6], True), **PRESETS[name]}[k] for k in PRESET_KEYS)
