"""Contextual embeddings from BERT, the bidirectional encoder, measured exactly like the GPT's.

`bert_contextual_similarity(model, tokenizer, sentences, word)` returns the structure of
`tinygpt.interpret.embeddings.contextual_similarity`, so the same plot and table show both: how similar one
word's vector is across sentences, stage by stage (the static WordPiece row, the embedding layer's output, then
each encoder layer). Every BERT position attends to the whole sentence, left and right; a GPT position only to
the positions before it. `load_bert` fetches bert-base-uncased from the Hugging Face Hub cache (with a timeout,
like tinygpt.loading) or loads a local directory written with save_pretrained.
"""
from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Sequence

import torch

from .embeddings import find_word, stage_similarity, word_and_sentences

BERT_NAME = "bert-base-uncased"
BERT_REPO = "google-bert/bert-base-uncased"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


@lru_cache(maxsize=2)
def load_bert(name_or_dir: str = BERT_NAME, hub_timeout: float = 5.0):
    """(BertModel in eval mode, BertTokenizerFast). Raises ConnectionError when the Hub cannot be reached,
    ValueError for a name that is neither bert-base-uncased nor a directory."""
    from huggingface_hub import hf_hub_download
    from transformers import BertModel, BertTokenizerFast

    from ..loading import hub_snapshot

    name = str(name_or_dir).strip()
    if os.path.isdir(name):
        path = name
    elif name.lower() in (BERT_NAME, BERT_REPO):
        path = hub_snapshot(BERT_REPO, hub_timeout)  # config.json + model.safetensors, or ConnectionError
        for f in TOKENIZER_FILES:  # the network works (the config arrived): the small tokenizer files follow
            try:
                hf_hub_download(BERT_REPO, f)
            except Exception:  # noqa: BLE001 - tokenizer.json alone is enough; vocab.txt alone too
                pass
    else:
        raise ValueError(f"Unknown BERT model {name!r}: use {BERT_NAME} or a directory saved with save_pretrained.")
    logging.getLogger("transformers").setLevel(logging.ERROR)  # the pre-training heads are not needed: no warning
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one model load is not worth a progress bar in the server's log
    model = BertModel.from_pretrained(path, add_pooling_layer=False).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, BertTokenizerFast.from_pretrained(path)


@torch.no_grad()
def bert_contextual_similarity(model, tokenizer, sentences: Sequence[str], word: str) -> dict:
    """How similar one word's BERT vector is across sentences, stage by stage.

    The word's vector in a sentence is the mean over its WordPiece tokens (its first occurrence). Stages:
    "wordpiece (static)" (the row of the word embedding table: the same in every sentence), "embeddings" (word +
    position + segment embeddings after LayerNorm), then the output of each encoder layer.
    Returns {word, sentences, layers: [names], cos: (L+2, S, S), mean_cos, baseline, positions}: baseline is the
    mean cosine between the word and the sentences' other tokens ([CLS]/[SEP] excluded) at that stage.
    """
    word, sentences = word_and_sentences(word, sentences)
    cand = tokenizer(word, add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids)
    limit = model.config.max_position_embeddings
    table = model.embeddings.word_embeddings.weight  # (V, C)
    stages, positions = [], []
    for k, s in enumerate(sentences, 1):
        ids = tokenizer(s)["input_ids"]  # [CLS] ... [SEP]
        if len(ids) > limit:
            raise ValueError(f"Sentence {k} is {len(ids)} tokens; BERT's context is {limit}.")
        pos = find_word(ids, [cand])
        if pos is None:
            raise ValueError(f"Sentence {k} does not contain {word!r}.")
        positions.append(pos)
        x = torch.tensor([ids])
        hidden = model(input_ids=x, attention_mask=torch.ones_like(x), output_hidden_states=True).hidden_states
        states = [table[x[0, pos]].float().mean(0)] + [h[0, pos].float().mean(0) for h in hidden]  # L+2 of (C,)
        rest = [i for i in range(len(ids)) if i not in pos and ids[i] not in special]
        ctx = [table[x[0, rest]].float()] + [h[0, rest].float() for h in hidden]  # (T_rest, C) per stage
        stages.append((states, ctx))
    names = ["wordpiece (static)", "embeddings (+pos, LN)"] + [f"layer {i}" for i in range(len(stages[0][0]) - 2)]
    return stage_similarity(word, sentences, positions, stages, names)
