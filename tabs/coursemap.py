"""Course map (the first tab): the questions our users are set, in our own words and grouped as a lecture is,
each with a button that opens the tab that answers it with the settings filled in.

Everything comes from ENTRIES below: a new tab adds one row. A row whose tab (or whose settings) this app does
not have yet stays greyed out with a note, and lights up once a tab registers itself under that id with those
fields (tabs.kit.registry.register).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import gradio as gr

from tinygpt import GPTConfig
from tinygpt.beyond.scaling import format_budgets, format_shapes
from tinygpt.defaults import EMBED_TAB, PARAMS, SAMPLE_TAB, SCALING_LECTURE

from .kit import recordings
from .kit.links import settings_query
from .kit.registry import course_button


def architecture(c: GPTConfig) -> dict:
    """The calculator's architecture fields of a config (its form's values)."""
    return dict(head_dim=c.head_size or 0, mlp=c.mlp, norm=c.norm, pos_encoding=c.pos_encoding,
                qkv_bias={None: "auto", True: "on", False: "off"}[c.qkv_bias], n_experts=c.n_experts,
                moe_top_k=c.moe_top_k)


# the calculator's start-up architecture (tinygpt.defaults.PARAMS' preset, GPT-2): a row leaves equal fields out
ARCH_START = architecture(GPTConfig.from_preset(PARAMS["preset"]))


def shape(preset: str, **changes) -> dict:
    """The calculator's fields for a preset (computed from tinygpt's presets, never typed in), plus changes: the
    sizes and every architecture option that differs from the start-up shape's (a LLaMA row opens SwiGLU, RMSNorm,
    RoPE)."""
    c = GPTConfig.from_preset(preset)
    out = dict(n_layer=c.n_layer, n_embd=c.n_embd, n_head=c.n_head, n_kv_head=c.kv_heads, block_size=c.block_size,
               vocab_size=c.vocab_size, bias=c.bias, tied=c.tie_weights, ffn_mult=c.ffn_dim / c.n_embd,
               seq_len=c.block_size)
    out.update({k: v for k, v in architecture(c).items() if v != ARCH_START[k]})
    out.update(changes)
    return out


@dataclass(frozen=True)
class Entry:
    question: str  # in our own words
    group: str  # the lecture it belongs to
    tab: str  # id of the tab that answers it (tabs.kit.registry.register's first argument)
    settings: dict = field(default_factory=dict)  # field key -> value, as in a link (section: the part to open)
    needs: str = ""  # what must be merged for the row to light up (shown while it cannot)
    id: str = ""  # a heavy row's stable name: its recording is assets/recordings/<id>.json (tabs.kit.recordings)


# Tabs other helpers are adding; their rows are greyed out until the tab registers under this id.
UPCOMING: dict[str, str] = {}

G_SHAPE = "1 · Counting a GPT: parameters and shapes"
G_GEN = "2 · Generating text"
G_INSIDE = "3 · What the model has learned"
G_ATTN = "4 · Attention and positions"
G_TRAIN = "5 · Training and fine-tuning"
G_COMPUTE = "6 · Compute, memory and speed"
G_SCALE = "7 · Scaling and alignment"

ENTRIES = [
    # 1 · shapes and parameter counts
    Entry("How many trainable parameters does GPT-2 small have, and how close is the 12·L·d² rule?", G_SHAPE,
          "calculator", shape("gpt2")),
    Entry("Give the model 96 layers, width 12,288, 96 heads and a 2,048-token context: how many parameters is"
          " that (GPT-3)?", G_SHAPE, "calculator", shape("gpt3")),
    Entry("Scale GPT-2 from small to medium, large and XL by changing only the configuration: how do the counts"
          " grow?", G_SHAPE, "calculator", shape("gpt2-xl")),
    Entry("Which holds more parameters in a block, the feed-forward network or multi-head attention?", G_SHAPE,
          "calculator", shape("gpt2")),
    # 2 · generating text
    Entry("Run the classic sampling example: the 'one ring' prompt, 3 samples of 100 new tokens. What do start,"
          " number of samples and max new tokens do?", G_GEN, "sampling",
          dict(prompt=SAMPLE_TAB["start"], num_samples=SAMPLE_TAB["num_samples"],
               max_new_tokens=SAMPLE_TAB["max_new_tokens"])),
    Entry("Sample at temperature 0.1: why does the text repeat itself?", G_GEN, "sampling", dict(temperature=0.1)),
    Entry("Sample at temperature 10: why does the text turn into noise?", G_GEN, "sampling", dict(temperature=10)),
    Entry("Keep temperature 10 but allow only the 2 most likely tokens (top-k = 2): why is it readable again?",
          G_GEN, "sampling", dict(temperature=10, top_k=2)),
    Entry("What does top-p (nucleus sampling) keep, compared with top-k?", G_GEN, "sampling",
          dict(temperature=1, top_k=0, top_p=0.9)),
    Entry("How does the model produce each new token (layers, attention heads, activation, LM head)?", G_GEN,
          "sampling", {}),
    # 3 · what the model has learned
    Entry("Common words against rare or made-up ones: how do their embedding norms and cosine similarities"
          " differ, and what does that say about how the embedding table is used?", G_INSIDE, "embeddings",
          dict(common=EMBED_TAB["common"], rare=EMBED_TAB["rare"])),
    Entry("Contextual embeddings: does 'channel' get different vectors in a TV, a river and a spy sentence?"
          " (with BERT, a bidirectional encoder)", G_INSIDE, "embeddings",
          dict(ctx_word=EMBED_TAB["ctx_word"], ctx_model="bert-base-uncased")),
    Entry("The same 'channel' question with the GPT itself (a causal decoder): where in depth do the senses"
          " separate?", G_INSIDE, "embeddings", dict(ctx_word=EMBED_TAB["ctx_word"])),
    Entry("Skip every other block (run only the even ones): is the text shorter, more repetitive, less"
          " coherent?", G_INSIDE, "pruning", dict(configs=["full", "even"])),
    Entry("Drop the last half of the blocks instead: which half matters more?", G_INSIDE, "pruning",
          dict(configs=["full", "first half", "last half"])),
    # 4 · attention and positions
    Entry("See the causal mask in the attention weights: who may attend to whom?", G_ATTN, "attention",
          dict(view="mask off: what position i could see", section="head")),
    Entry("Why divide by √d_k before the softmax? What happens to the attention weights without it?", G_ATTN,
          "attention", dict(view="1/√d_k removed: the sharper softmax", section="scale")),
    Entry("Draw the computational graph from the input tokens to the loss, with the tensor shapes on every edge.",
          G_ATTN, "attention", dict(section="graph")),
    Entry("Comment a multi-head attention implementation line by line: how many parameters does it have?",
          G_ATTN, "attention", dict(section="code")),
    Entry("Sinusoidal positional encodings: does the dot product between two positions fall smoothly with their"
          " distance?", G_ATTN, "positions"),
    Entry("RoPE: show that the query·key score depends only on the relative position.", G_ATTN, "positions"),
    Entry("Grouped-query attention with 8 query heads and 2 K/V groups: how much smaller is the KV cache than"
          " with standard multi-head attention?", G_ATTN, "calculator", shape("gpt2", n_head=8, n_kv_head=2)),
    # 5 · training and fine-tuning
    Entry("Train a small GPT from scratch and report its loss curve and accuracy.", G_TRAIN, "train",
          dict(n_layer=2, compare_b=False, steps=500, lr=2e-3), id="train-small"),  # one run: 500 steps fit
    Entry("Train with and without the causal mask: what happens to the loss and to the generated text?",
          G_TRAIN, "train", dict(a_causal=True, b_causal=False), id="train-mask"),
    Entry("Why normalise inside the block? Train with and without LayerNorm.", G_TRAIN, "train",
          dict(b_causal=True, b_layernorm=False), id="train-layernorm"),
    Entry("Remove the 1/√d_k scaling and train: what does saturated attention do to learning?", G_TRAIN, "train",
          dict(b_causal=True, b_attn_scale=False, n_head=2),  # d_k = 64: unscaled logits 8x, not 5.7x, too big
          id="train-attn-scale"),
    Entry("Separate dropout rates for the embeddings, attention and residual connections: train with and"
          " without them.", G_TRAIN, "train",
          dict(b_causal=True, embd_pdrop=0.1, attn_pdrop=0.2, resid_pdrop=0.1, b_own_dropout=True), id="train-dropout"),
    Entry("Learned positions against RoPE (or none at all): train both and compare the curves.", G_TRAIN, "train",
          dict(b_causal=True, b_pos_encoding="rope"), id="train-positions"),
    Entry("Fine-tune GPT-2 on an essay of your own (5,000–15,000 characters): how do style, vocabulary and tone"
          " change for the same prompt?", G_TRAIN, "finetune", {}, id="finetune-essay"),
    Entry("A Mixture-of-Experts layer (4 experts, top-1 routing, load-balancing loss) against a dense model with"
          " as many active parameters.", G_TRAIN, "train",
          dict(b_causal=True, b_experts=4, b_top_k=1, b_aux=0.05, match_active=True),  # balanced in 300 steps
          id="train-moe"),
    # 6 · compute, memory, speed
    Entry("Roughly how much GPU memory does training GPT-2 take in 32-bit precision with batch size 1?",
          G_COMPUTE, "calculator", shape("gpt2", dtype="fp32", optimizer="adamw", batch_size=1)),
    Entry("How many FLOPs and A100 GPU-hours does pre-training a 7B model on 1T tokens take?", G_COMPUTE,
          "calculator", shape("llama-7b", dtype="fp16", seq_len=4096, tokens=10 ** 12, tflops=312)),
    Entry("How big is the KV cache of a 7B model at 4,096 tokens in fp16?", G_COMPUTE, "calculator",
          shape("llama-7b", dtype="fp16", seq_len=4096, batch_size=1)),
    Entry("Measure the KV-cache speed-up: latency per token against sequence length, with and without the"
          " cache.", G_COMPUTE, "efficiency", dict(kv_tokens=128, section="kv"), id="efficiency-kv"),
    Entry("Profile a forward pass: how is the time split between attention, feed-forward, LayerNorm and"
          " embeddings?", G_COMPUTE, "efficiency", dict(section="profile"), id="efficiency-profile"),
    Entry("FlashAttention-2 tiling in plain PyTorch: memory and speed against standard attention at 1,024, 4,096 and"
          " 16,384 tokens.", G_COMPUTE, "efficiency",
          dict(section="flash", bench_lengths=["1,024", "4,096", "16,384"]), id="efficiency-flash"),
    # 7 · scaling and alignment
    Entry("Fit a scaling law: loss against model size, and the compute-optimal (Chinchilla) split of a budget.",
          G_SCALE, "scaling", dict(shapes=format_shapes(SCALING_LECTURE["shapes"]), steps=SCALING_LECTURE["steps"],
                                   budgets=format_budgets(SCALING_LECTURE["budgets"]), section="rerun"),  # a lecture's
          id="scaling-law"),
    Entry("Implement the DPO loss and watch it converge on synthetic preference pairs.", G_SCALE, "dpo",
          id="dpo-loss"),
    Entry("The RLHF pipeline on a toy model: supervised fine-tuning, a reward model, then PPO.", G_SCALE, "rlhf",
          id="rlhf-pipeline"),
]


def recorded_answer(e: Entry, folder: str = recordings.RECORDINGS) -> str:
    """The heavy row's recorded answer as HTML, with a "Run live" link that opens the tab with the row's settings
    ("" when the row has no recording)."""
    rec = recordings.load(e.id, folder) if e.id else None
    return recordings.render(rec, folder, live=f"?{settings_query(e.tab, e.settings)}", changed=e.settings)


def _shown(page: str) -> str:
    return page


def build():
    """The Course map tab (top level, first). tabs.kit.registry.install() enables the buttons once the tabs exist.
    A heavy row with a recording (assets/recordings, `python -m tinygpt record-course-map`) gets a collapsed
    "Recorded answer" under it: its HTML is sent when it is opened (never part of the page's config, which every
    visitor's session holds), its figures are static files."""
    recordings.serve()
    with gr.Tab("Course map", id="coursemap"):
        gr.Markdown("## What are you asked to find out?\nEach question opens the tab that answers it, **with the"
                    " settings filled in**. Every tab also has *Copy link to this setup* (a link that reopens exactly"
                    " that state), the same run as a command line, and downloads: figures, tables and a report.")
        group = None
        for k, e in enumerate(ENTRIES):
            if e.group != group:
                group = e.group
                gr.Markdown(f"### {group}")
            link = settings_query(e.tab, e.settings)
            with gr.Row(equal_height=True):
                with gr.Column(scale=5):
                    gr.Markdown(f"{e.question} · [link](?{link})", elem_classes="tg-map-q")
                    note = gr.Markdown()
                button = gr.Button("Open ▸", size="sm", scale=1, min_width=180, elem_id=f"map-{k}")
            course_button(button, note, e.tab, e.settings, e.needs or UPCOMING.get(e.tab, ""), row=e)
            page = recorded_answer(e)
            if page:
                with gr.Accordion("Recorded answer", open=False, elem_id=f"map-rec-{e.id}") as acc:
                    shown = gr.HTML(elem_id=f"map-rec-{e.id}-html")
                acc.expand(partial(_shown, page), None, shown, queue=False, api_visibility="private")
