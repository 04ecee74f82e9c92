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


def test_gpt2_comes_from_the_hub_cache(hf_dir, tmp_path):
    """A populated Hugging Face cache (as a download leaves it) is used without any network."""
    import shutil

    snap = tmp_path / "models--openai-community--gpt2" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(f"{hf_dir}/{f}", snap / f)
    (tmp_path / "models--openai-community--gpt2" / "refs").mkdir()
    (tmp_path / "models--openai-community--gpt2" / "refs" / "main").write_text("a" * 40)
    m, _ = load_model("gpt2", hub_cache_dir=str(tmp_path), allow_fallback=False)
    ref, _ = load_model(hf_dir)
    assert m.info.name == "gpt2" and m.info.fallback is False
    x = torch.randint(0, 50257, (1, 8))
    with torch.no_grad():
        assert torch.equal(m(x), ref(x))


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
