"""GPT-2 BPE ids are exact; the command line prints nanoGPT-style samples and one-line errors."""
import json

import pytest
from conftest import run_cli

from tinygpt import CharTokenizer


def test_gpt2_ids(tok):
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.encode(" the") == [262]
    assert tok.vocab_size == 50257 and tok.eot_token == 50256
    text = "Ünïcödé — naïve café 🤖 <|endoftext|>"
    assert tok.decode(tok.encode(text)) == text
    assert tok.piece(15496) == "Hello"


def test_char_tokenizer_roundtrip():
    t = CharTokenizer.from_text("hello world")
    assert t.decode(t.encode("low hole")) == "low hole"
    with pytest.raises(ValueError):
        t.encode("xyz")


def test_cli_params_json():
    r = run_cli("params", "--preset", "gpt2", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["params"]["total"] == 124_439_808
    assert set(d["params"]) >= {"total", "embedding", "attention", "feed_forward", "layer_norm", "lm_head"}


def test_cli_sample_text_and_json(tiny_dir, tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("one ring to rule them all,")
    r = run_cli("sample", "--model", tiny_dir, "--start", f"FILE:{prompt}", "--num-samples", "3",
                "--max-new-tokens", "10", "--temperature", "0.8", "--top-k", "200", "--seed", "1337")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("---------------") == 3
    r1 = run_cli("sample", "--model", tiny_dir, "--start", "one ring", "--num-samples", "2",
                 "--max-new-tokens", "8", "--seed", "5", "--json")
    r2 = run_cli("sample", "--model", tiny_dir, "--start", "one ring", "--num-samples", "2",
                 "--max-new-tokens", "8", "--seed", "5", "--json")
    d = json.loads(r1.stdout)
    assert d == json.loads(r2.stdout)  # seeded
    assert len(d["samples"]) == 2 and all(s.startswith("one ring") for s in d["samples"])
    assert d["model"] == tiny_dir and d["fallback"] is False


@pytest.mark.parametrize("args", [["--temperature", "-1"], ["--top-p", "0"], ["--top-p", "1.5"],
                                  ["--top-k", "-1"], ["--model", "no-such-model"], ["--layers", "0,x"],
                                  ["--layers", "0,99"], ["--temperature", "abc"]])
def test_cli_bad_values_one_line(args, tiny_dir):
    full = ["sample", "--max-new-tokens", "2", "--num-samples", "1"]
    if "--model" not in args:
        full += ["--model", tiny_dir]
    r = run_cli(*full, *args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:")


def test_cli_sample_gpt2_offline_falls_back_with_one_line():
    r = run_cli("sample", "--model", "gpt2", "--start", "one ring to rule them all,", "--num-samples", "2",
                "--max-new-tokens", "12", "--seed", "1337", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["fallback"] is True and d["model"] == "tiny-shakespeare"
    assert all(s.startswith("one ring to rule them all,") for s in d["samples"])
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("Offline:")
