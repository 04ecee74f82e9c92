"""Layer pruning: run only some of the transformer blocks and measure what changes.

Nothing is copied or modified: the model's `layers=[...]` argument skips blocks at run time, so the shared
model stays intact. Measurements per configuration: perplexity on a reference passage, repetition (share of
repeated 3-grams), distinct-2, length until end-of-text and time per token of a seeded generation; plus a
logit lens (the final LayerNorm and LM head applied after every block) to see where a prediction forms.
"""
from __future__ import annotations

import statistics
import time
from functools import partial
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..evaluate import ngram_stats, perplexity
from ..model import parse_layers
from ..sampling import encode_prompt, generate_stream

CONFIGS = ("full", "even", "odd", "first half", "last half", "custom")

# Public-domain reference passages (Jane Austen, 1813; Shakespeare, Hamlet III.1, c. 1600).
AUSTEN = """It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in \
want of a wife.

However little known the feelings or views of such a man may be on his first entering a neighbourhood, this \
truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property of \
some one or other of their daughters.

"My dear Mr. Bennet," said his lady to him one day, "have you heard that Netherfield Park is let at last?"

Mr. Bennet replied that he had not.

"But it is," returned she; "for Mrs. Long has just been here, and she told me all about it."

Mr. Bennet made no answer.

"Do you not want to know who has taken it?" cried his wife impatiently.

"You want to tell me, and I have no objection to hearing it."

This was invitation enough."""

SHAKESPEARE = """HAMLET:
To be, or not to be, that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles,
And by opposing end them. To die, to sleep;
No more; and by a sleep to say we end
The heart-ache and the thousand natural shocks
That flesh is heir to: 'tis a consummation
Devoutly to be wish'd. To die, to sleep;
To sleep, perchance to dream: ay, there's the rub;
For in that sleep of death what dreams may come,
When we have shuffled off this mortal coil,
Must give us pause: there's the respect
That makes calamity of so long life;
For who would bear the whips and scorns of time,
The oppressor's wrong, the proud man's contumely,
The pangs of despised love, the law's delay,
The insolence of office and the spurns
That patient merit of the unworthy takes,
When he himself might his quietus make
With a bare bodkin? who would fardels bear,
To grunt and sweat under a weary life,
But that the dread of something after death,
The undiscover'd country from whose bourn
No traveller returns, puzzles the will
And makes us rather bear those ills we have
Than fly to others that we know not of?"""

REFERENCE_TEXTS = {"Austen, Pride and Prejudice (1813)": AUSTEN, "Shakespeare, Hamlet (c. 1600)": SHAKESPEARE}


def default_reference(model_name: str) -> str:
    """The Shakespeare passage for models trained on Shakespeare, the Austen passage otherwise."""
    return SHAKESPEARE if "shakespeare" in str(model_name).lower() else AUSTEN


def named_layers(name: str, n_layer: int, custom=None) -> list[int]:
    """Block indices for a named configuration: full, even (0,2,4,...), odd, first half, last half, custom."""
    key = str(name).strip().lower()
    if key == "full":
        layers = list(range(n_layer))
    elif key == "even":
        layers = list(range(0, n_layer, 2))
    elif key == "odd":
        layers = list(range(1, n_layer, 2))
    elif key == "first half":
        layers = list(range(max(1, n_layer // 2)))  # the first n/2 blocks (at least one)
    elif key == "last half":
        layers = list(range(n_layer - max(1, n_layer // 2), n_layer))
    elif key == "custom":
        return parse_layers(custom if custom is not None else "", n_layer)
    else:
        raise ValueError(f"Unknown configuration {name!r}; choose from {', '.join(CONFIGS)}.")
    if not layers:
        raise ValueError(f"This model has only {n_layer} block, so the {key!r} configuration is empty.")
    return layers


def run_configuration(model, tok, prompt: str, layers: Optional[Sequence[int]], max_new_tokens: int = 60,
                      temperature: float = 0.8, top_k: Optional[int] = 200, top_p: Optional[float] = None,
                      seed: int = 1337, reference: Optional[str] = None, batcher=None, shared=None) -> dict:
    """Generate from `prompt` with the chosen blocks (a fresh generator seeded with `seed`) and measure it.

    Returns {layers, text (prompt + continuation), new_ids, repetition, distinct_2, length_to_eot,
    ms_per_token (median time of one generation step), and loss/perplexity/accuracy on `reference` when given}.
    batcher (tinygpt.batching.Batcher): generate through it, sharing forward passes with everyone running the same
    blocks at the same time; ms_per_token is then the median forward pass that produced this text's tokens.
    shared (tinygpt.batching.SharedResults): compute the reference perplexity once per (model, blocks, passage).
    """
    layers = model.check_layers(layers)
    x = torch.tensor([encode_prompt(tok, prompt, model.config.block_size)], dtype=torch.long)  # (1, T)
    gen = torch.Generator().manual_seed(int(seed))
    new, step_s = [], []
    if batcher is not None:
        stream = batcher.submit(x, max_new_tokens, temperature, top_k, top_p, gen, layers)
        try:
            new = [int(nxt[0, 0]) for nxt in stream]  # (1, 1) per step
        finally:
            stream.cancel()  # Stop pressed: the row leaves the batch
        step_s = stream.forward_s
    else:
        t0 = time.perf_counter()
        for nxt in generate_stream(model, x, max_new_tokens, temperature, top_k, top_p, gen, layers=layers):
            new.append(int(nxt[0, 0]))  # (1, 1)
            step_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
    # the median step (the prompt's prefill is the first) is robust to a busy CPU's occasional stalls
    ms = 1000 * statistics.median(step_s) if step_s else 0.0
    res = {"layers": list(layers), "text": prompt + tok.decode(new), "new_ids": new,
           "ms_per_token": ms, **ngram_stats(new, tok.eot_token)}
    if reference is not None:
        compute = partial(perplexity, model, tok, reference, layers)
        ppl = compute() if shared is None else shared.get(("perplexity", model, tuple(layers), reference), compute)
        res.update(loss=ppl["loss"], perplexity=ppl["perplexity"], accuracy=ppl["accuracy"])
    return res


@torch.no_grad()
def logit_lens(model, tok, prompt: str, layers: Optional[Sequence[int]] = None) -> dict:
    """Read the prediction for the next token after the embeddings and after every run block.

    Each intermediate residual stream (last position) goes through the final LayerNorm and the LM head, as if
    the model stopped there. The "answer" is the model's final top token (after all the chosen blocks).
    Returns {answer_id, answer_piece, rows: [{stage, top_id, top_piece, top_prob, answer_prob, answer_rank}]}.
    """
    layers = model.check_layers(layers)
    ids = tok.encode(prompt)
    if not ids:
        raise ValueError("Type a prompt first.")
    x = torch.tensor([ids[-model.config.block_size:]], dtype=torch.long)
    hidden = model.hidden_states(x, layers)  # list of (1, T, C)
    last = torch.stack([h[0, -1] for h in hidden])  # (L+1, C): the last position after each stage
    probs = F.softmax(model.logits(last).float(), dim=-1)  # (L+1, V): final LayerNorm + LM head
    answer = int(probs[-1].argmax())
    names = ["embeddings"] + [f"block {i}" for i in layers]
    rows = []
    for name, p in zip(names, probs):
        top = int(p.argmax())
        rows.append({"stage": name, "top_id": top, "top_piece": tok.piece(top), "top_prob": float(p[top]),
                     "answer_prob": float(p[answer]), "answer_rank": int((p > p[answer]).sum()) + 1})
    return {"answer_id": answer, "answer_piece": tok.piece(answer), "rows": rows}
