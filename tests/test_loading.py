"""load_model: local directories, the offline fallback for GPT-2 names, and one copy of the weights."""
import pytest
import torch

import tinygpt.loading as loading
from tinygpt import load_model


def test_local_dir_info(hf_dir):
    m, tok = load_model(hf_dir)
    assert m.info.fallback is False and m.info.name == hf_dir
    assert not any(p.requires_grad for p in m.parameters())
    assert m.lm_head.weight.data_ptr() == m.transformer.wte.weight.data_ptr()  # tied again after loading
    assert tok.encode("Hello world") == [15496, 995]


def test_gpt2_falls_back_offline(monkeypatch, tiny_dir):
    monkeypatch.setattr(loading, "embedded_dir", lambda: __import__("pathlib").Path(tiny_dir))
    m, tok = load_model("gpt2", hub_timeout=2.0)
    assert m.info.fallback is True and m.info.name == loading.EMBEDDED_NAME
    assert "Offline" in m.info.notice
    with pytest.raises(ConnectionError):
        load_model("gpt2", hub_timeout=2.0, allow_fallback=False)


def test_unknown_name_is_a_plain_error():
    with pytest.raises(ValueError, match="Unknown model"):
        load_model("definitely-not-a-model")


def test_bf16_loading(hf_dir):
    m, _ = load_model(hf_dir, dtype=torch.bfloat16)
    assert m.transformer.wte.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("sharded", [False, True])
def test_gpt2_comes_from_the_hub_cache(hf_dir, tmp_path, tok, sharded):
    """A populated Hugging Face cache (as a download leaves it) is used without any network; a repository stored
    as shards + index (as larger Hub models are) loads the same way."""
    import os
    import shutil

    from tinygpt import save_checkpoint

    ref, _ = load_model(hf_dir)
    src = tmp_path / "src"
    if sharded:
        save_checkpoint(ref, tok, str(src), max_shard_bytes=1_000_000)
    else:
        shutil.copytree(hf_dir, src)
    cache = tmp_path / "cache"
    snap = cache / "models--openai-community--gpt2" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    for f in os.listdir(src):
        if f == "config.json" or f.endswith((".safetensors", ".index.json")):
            shutil.copy(src / f, snap / f)
    assert ("model.safetensors.index.json" in os.listdir(snap)) == sharded
    (cache / "models--openai-community--gpt2" / "refs").mkdir()
    (cache / "models--openai-community--gpt2" / "refs" / "main").write_text("a" * 40)
    m, _ = load_model("gpt2", hub_cache_dir=str(cache), allow_fallback=False)
    assert m.info.name == "gpt2" and m.info.fallback is False
    x = torch.randint(0, 50257, (1, 8))
    with torch.no_grad():
        assert torch.equal(m(x)[0], ref(x)[0])


def test_pickle_checkpoints_are_never_loaded(tmp_path, hf_dir):
    """Only safetensors are read: a directory with just a pickled pytorch_model.bin is refused, unopened."""
    import shutil

    shutil.copy(f"{hf_dir}/config.json", tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not even opened")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_model(str(tmp_path))


def test_analytics_off_by_default(monkeypatch):
    import importlib
    import os

    monkeypatch.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)
    import app
    importlib.reload(app)
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_sharded_checkpoint_roundtrip(tmp_path, tok):
    """save_checkpoint writes Hugging Face's sharded layout above the shard size; load_model reads it back, and
    transformers itself loads the same directory."""
    import json
    import os

    from transformers import GPT2LMHeadModel

    from tinygpt import GPT, GPTConfig, save_checkpoint

    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("tiny")).eval()
    save_checkpoint(model, tok, str(tmp_path), max_shard_bytes=2_000_000)
    files = sorted(os.listdir(tmp_path))
    shards = [f for f in files if f.startswith("model-") and f.endswith(".safetensors")]
    assert "model.safetensors" not in files and len(shards) >= 2
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    for f in shards:  # each shard is under the limit (+ its small header), or one tensor that alone is bigger
        n_tensors = sum(v == f for v in index["weight_map"].values())
        assert os.path.getsize(tmp_path / f) <= 2_000_000 + 50_000 or n_tensors == 1
    m2, _ = load_model(str(tmp_path), fast_path=False)  # the checkpoint is under test, not the matmul kernel
    x = torch.randint(0, 50257, (1, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x)[0], m2(x)[0])
        hf = GPT2LMHeadModel.from_pretrained(str(tmp_path)).eval()
        assert torch.allclose(hf(x).logits, model(x)[0], atol=1e-4)
    (tmp_path / shards[-1]).unlink()
    with pytest.raises(FileNotFoundError, match="shard"):
        load_model(str(tmp_path))
