"""Reading Hugging Face config.json files: for every supported family the count equals sum(p.numel()) of the
transformers model built from the same config (meta device, tiny and full size), the KV cache equals the bytes
transformers' own cache holds, and anything we cannot count is refused with a sentence naming the field."""
import json
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from tinygpt import GPTConfig, count_parameters, kv_cache_bytes
from tinygpt.compute import estimate
from tinygpt.hf_config import (
    fetch_hub_config,
    from_hf_config,
    hf_config_notes,
    hf_family,
    load_config_json,
    parse_config_json,
)

# config.json files as published on the Hub (fields that do not change the shape left out for brevity)
GPT2 = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new", "n_ctx": 1024,
        "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024, "vocab_size": 50257, "n_inner": None}
LLAMA_7B = {"architectures": ["LlamaForCausalLM"], "hidden_act": "silu", "hidden_size": 4096,  # huggyllama/llama-7b
            "intermediate_size": 11008, "max_position_embeddings": 2048, "model_type": "llama",
            "num_attention_heads": 32, "num_hidden_layers": 32, "rms_norm_eps": 1e-06, "tie_word_embeddings": False,
            "vocab_size": 32000}
LLAMA3_8B = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "hidden_act": "silu", "hidden_size": 4096,
             "intermediate_size": 14336, "max_position_embeddings": 8192, "model_type": "llama",
             "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
             "rope_theta": 500000.0, "tie_word_embeddings": False, "vocab_size": 128256}
MISTRAL_7B = {"architectures": ["MistralForCausalLM"], "hidden_act": "silu", "hidden_size": 4096,
              "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
              "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
              "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": False, "vocab_size": 32000}
QWEN2_05B = {"architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu", "hidden_size": 896,
             "intermediate_size": 4864, "max_position_embeddings": 131072, "max_window_layers": 24,
             "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
             "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": True,
             "use_sliding_window": False, "vocab_size": 151936}
QWEN2_7B = {**QWEN2_05B, "hidden_size": 3584, "intermediate_size": 18944, "num_attention_heads": 28,
            "num_hidden_layers": 28, "num_key_value_heads": 4, "tie_word_embeddings": False, "vocab_size": 152064}
GEMMA_7B = {"architectures": ["GemmaForCausalLM"], "head_dim": 256, "hidden_act": "gelu", "hidden_size": 3072,
            "intermediate_size": 24576, "max_position_embeddings": 8192, "model_type": "gemma",
            "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 16, "rms_norm_eps": 1e-06,
            "vocab_size": 256000}
GEMMA_2B = {**GEMMA_7B, "hidden_size": 2048, "intermediate_size": 16384, "num_attention_heads": 8,
            "num_hidden_layers": 18, "num_key_value_heads": 1}
MIXTRAL = {"architectures": ["MixtralForCausalLM"], "hidden_act": "silu", "hidden_size": 4096,
           "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mixtral",
           "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8,
           "num_local_experts": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": None,
           "tie_word_embeddings": False, "vocab_size": 32000}
FULL = {"gpt2": (GPT2, 124_439_808), "llama-7b": (LLAMA_7B, 6_738_415_616), "llama3-8b": (LLAMA3_8B, 8_030_261_248),
        "mistral-7b": (MISTRAL_7B, 7_241_732_096), "qwen2-0.5b": (QWEN2_05B, 494_032_768),
        "qwen2-7b": (QWEN2_7B, 7_615_616_512), "gemma-2b": (GEMMA_2B, 2_506_172_416),
        "gemma-7b": (GEMMA_7B, 8_537_680_896), "mixtral-8x7b": (MIXTRAL, 46_702_792_704)}


def hf_model(d, meta=True):
    """transformers' own model for a config.json dict (weights on the meta device: nothing allocated)."""
    cfg = AutoConfig.for_model(**d)
    if not meta:
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(cfg).eval()
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(cfg)


def numel(model):
    return sum(p.numel() for p in model.parameters())  # a tied matrix is one parameter, counted once


@pytest.mark.parametrize("name", list(FULL))
def test_full_size_configs_equal_transformers(name):
    d, published = FULL[name]
    counts = count_parameters(from_hf_config(d))
    assert counts["total"] == numel(hf_model(d)) == published


def test_mixtral_active_parameters_equal_two_experts_of_transformers():
    d = {**MIXTRAL, "num_hidden_layers": 2}
    m = hf_model(d)
    counts = count_parameters(from_hf_config(d))
    experts = m.model.layers[0].mlp.experts
    one_expert = sum(p.numel() for p in experts.parameters()) // d["num_local_experts"]
    assert counts["total"] == numel(m)
    assert counts["total"] - counts["active"] == 2 * (8 - 2) * one_expert
    assert count_parameters(from_hf_config(MIXTRAL))["active"] == 12_879_925_248


TINY = {"hidden_size": 48, "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
        "vocab_size": 101, "max_position_embeddings": 64}
TINY_CASES = [
    ("gpt2", {"n_embd": 48, "n_layer": 2, "n_head": 4, "n_positions": 33, "vocab_size": 101, "n_inner": 40}),
    ("gpt2", {"n_embd": 48, "n_layer": 3, "n_head": 6, "n_positions": 17, "vocab_size": 101,
              "tie_word_embeddings": False}),
    ("llama", {**TINY}),
    ("llama", {**TINY, "num_key_value_heads": 2, "head_dim": 20, "tie_word_embeddings": True}),
    ("llama", {**TINY, "num_key_value_heads": 1, "attention_bias": True, "mlp_bias": True}),
    ("mistral", {**TINY, "num_key_value_heads": 2, "head_dim": 8, "sliding_window": 16}),
    ("qwen2", {**TINY, "num_key_value_heads": 2}),
    ("qwen2", {**TINY, "num_key_value_heads": 4, "head_dim": 6, "tie_word_embeddings": True}),
    ("gemma", {**TINY, "num_key_value_heads": 1, "head_dim": 16}),
    ("gemma", {**TINY, "num_key_value_heads": 4, "head_dim": 12, "tie_word_embeddings": False}),
    ("mixtral", {**TINY, "num_key_value_heads": 2, "num_local_experts": 4, "num_experts_per_tok": 2}),
    ("mixtral", {**TINY, "num_key_value_heads": 4, "num_local_experts": 3, "num_experts_per_tok": 1, "head_dim": 10}),
]


@pytest.mark.parametrize("family,fields", TINY_CASES)
def test_tiny_configs_equal_transformers_params_and_kv_cache(family, fields):
    d = {"model_type": family, **fields}
    cfg = from_hf_config(d)
    model = hf_model(d, meta=False)  # real (tiny) weights: run it and measure its KV cache
    assert count_parameters(cfg)["total"] == numel(model)
    B, T = 3, 9
    with torch.no_grad():
        cache = model(torch.randint(0, 101, (B, T)), use_cache=True).past_key_values
    held = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert kv_cache_bytes(cfg, B, T, "fp32") == held


def test_tinygpt_checkpoint_config_round_trips():
    for cfg in (GPTConfig.from_preset("tiny"), GPTConfig.from_preset("mixtral-8x7b", n_layer=2),
                GPTConfig(n_layer=2, n_head=4, n_embd=32, head_size=12, qkv_bias=True, bias=False, norm="rmsnorm")):
        assert count_parameters(from_hf_config(cfg.to_hf_dict())) == count_parameters(cfg)


def test_family_from_architectures_and_notes():
    d = {k: v for k, v in MISTRAL_7B.items() if k != "model_type"}
    assert hf_family(d) == "mistral"
    assert count_parameters(from_hf_config(d))["total"] == 7_241_732_096
    assert any("4,096" in n for n in hf_config_notes(MISTRAL_7B))
    assert hf_config_notes(QWEN2_05B) == []  # use_sliding_window is false
    assert "GeGLU" in hf_config_notes(GEMMA_7B)[0]


@pytest.mark.parametrize("d,match", [
    ({**LLAMA_7B, "intermediate_size": None}, "missing the field intermediate_size"),
    ({k: v for k, v in LLAMA_7B.items() if k != "hidden_size"}, "missing the field hidden_size"),
    ({k: v for k, v in MIXTRAL.items() if k != "num_local_experts"}, "missing the field num_local_experts"),
    ({k: v for k, v in GEMMA_7B.items() if k != "head_dim"}, "missing the field head_dim"),
    ({k: v for k, v in GPT2.items() if k != "n_positions"}, "missing the field n_positions"),
    ({k: v for k, v in MISTRAL_7B.items() if k != "num_key_value_heads"}, "missing the field num_key_value_heads"),
    ({**GEMMA_7B, "num_key_value_heads": None}, r"\(gemma\) is missing the field num_key_value_heads"),
    ({k: v for k, v in MISTRAL_7B.items() if k != "max_position_embeddings"}, "max_position_embeddings"),
    ({**LLAMA_7B, "model_type": "falcon"}, "Unsupported architecture 'falcon'"),
    ({**LLAMA_7B, "model_type": "gemma2"}, "four norms per block"),
    ({**LLAMA_7B, "model_type": "qwen3"}, "q/k norms"),
    ({"architectures": ["BertForMaskedLM"], "hidden_size": 768}, "Unsupported architecture 'BertForMaskedLM'"),
    ({"hidden_size": 768}, "no model_type or architectures"),
    ({**LLAMA_7B, "attention_bias": True}, "attention_bias=true with mlp_bias=false"),
    ({**LLAMA_7B, "num_hidden_layers": "32"}, "num_hidden_layers must be a positive whole number"),
    ({**LLAMA_7B, "num_hidden_layers": 0}, "num_hidden_layers must be a positive whole number"),
    ({**LLAMA_7B, "hidden_size": 4100}, "must give head_dim"),
    ({**LLAMA_7B, "num_key_value_heads": 5}, "divisible by n_kv_head"),
    ({**LLAMA_7B, "tie_word_embeddings": "no"}, "true or false"),
    ({**GPT2, "add_cross_attention": True}, "cross-attention"),
    ([1, 2], "JSON object"),
])
def test_unknown_or_missing_fields_are_refused_with_the_field_named(d, match):
    with pytest.raises(ValueError, match=match):
        from_hf_config(d)


def test_parse_and_load_config_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_7B))
    assert load_config_json(tmp_path) == load_config_json(tmp_path / "config.json") == LLAMA_7B
    assert parse_config_json(json.dumps(GPT2)) == GPT2
    for text, match in (("", "Paste"), ("{not json", "not valid JSON"), ("[1]", "JSON object"),
                        (" " * 1_000_001, "Paste"), ("{" + " " * 1_000_001 + "}", "over")):
        with pytest.raises(ValueError, match=match):
            parse_config_json(text)
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_config_json(tmp_path / "bin.json")
    with pytest.raises(FileNotFoundError, match="No config.json"):
        load_config_json(tmp_path / "nowhere")


def hub_cache(tmp_path, repo, d):
    """A Hugging Face cache holding only repo's config.json (the layout hf_hub_download reads)."""
    folder = tmp_path / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(d))
    return tmp_path


def test_hub_config_from_the_cache_needs_no_network(tmp_path, monkeypatch):
    import huggingface_hub

    cache = hub_cache(tmp_path, "mistralai/Mistral-7B-v0.1", MISTRAL_7B)
    real = huggingface_hub.hf_hub_download

    def no_network(*a, **k):
        if not k.get("local_files_only"):
            raise AssertionError("the network was used although config.json is cached")
        return real(*a, **k)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    d = fetch_hub_config("mistralai/Mistral-7B-v0.1", cache_dir=cache)
    assert count_parameters(from_hf_config(d))["total"] == 7_241_732_096
    assert estimate(from_hf_config(d), seq_len=4096, dtype="fp16")["kv_cache_bytes"] == 536_870_912


def test_hub_offline_gated_and_bad_ids_are_one_sentence(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    def offline(*a, **k):
        raise ConnectionError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(ConnectionError) as e:
        fetch_hub_config("org/name", timeout=2, cache_dir=tmp_path)
    msg = str(e.value)
    assert msg.startswith("Offline:") and "org/name" in msg and "config.json file instead" in msg and "\n" not in msg

    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline_mode(*a, **k):  # what HF_HUB_OFFLINE=1 (or a dead network) raises: not an "entry not found"
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline_mode)
    with pytest.raises(ConnectionError, match="^Offline: .*LocalEntryNotFoundError"):
        fetch_hub_config("org/name", timeout=2, cache_dir=tmp_path)

    def gated(*a, **k):
        if k.get("local_files_only"):
            raise FileNotFoundError("not cached")
        raise GatedRepoError("401 Client Error", response=SimpleNamespace(headers={}, request=None))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)
    with pytest.raises(ValueError, match="gated"):
        fetch_hub_config("meta-llama/Llama-2-7b-hf", timeout=2, cache_dir=tmp_path)
    for bad in ("", "a/b/c", "../etc", "org/na me"):
        with pytest.raises(ValueError, match="org/name"):
            fetch_hub_config(bad, cache_dir=tmp_path)
