"""Shared fixtures: tiny random models saved as checkpoints, so no test needs the network or ../shared."""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from tinygpt import GPT, GPTConfig, gpt2_tokenizer, save_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def tok():
    return gpt2_tokenizer()


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory):
    """A random-weight transformers GPT2LMHeadModel written with save_pretrained."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=3, n_head=4, n_embd=32, n_positions=64, vocab_size=50257)
    hf = GPT2LMHeadModel(cfg).eval()
    d = tmp_path_factory.mktemp("hf_gpt2")
    hf.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tok):
    """Our own tiny 4-layer GPT (GPT-2 tokenizer), saved with save_checkpoint."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("tiny"))
    d = tmp_path_factory.mktemp("tiny_gpt")
    save_checkpoint(model, tok, str(d))
    return str(d)
