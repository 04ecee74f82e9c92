"""One device choice (tinygpt.device): TINYGPT_DEVICE / --device, auto = CUDA, then MPS, then CPU; unknown or
missing devices are refused in one sentence. GPU checks are marked `gpu` and skipped, visibly, without one."""
import pytest
import torch

from tinygpt import GPT, GPTConfig
from tinygpt.device import autocast, fast_dtype, model_device, peak_memory, pick_device

HAS_CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU on this machine (CI has none): GPU checks skipped")


def test_env_cpu_is_honoured(monkeypatch):
    monkeypatch.setenv("TINYGPT_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")
    assert pick_device(None) == torch.device("cpu")
    monkeypatch.setenv("TINYGPT_DEVICE", " CPU ")
    assert pick_device().type == "cpu"


def test_argument_beats_environment(monkeypatch):
    monkeypatch.setenv("TINYGPT_DEVICE", "no-such-device")
    assert pick_device("cpu") == torch.device("cpu")


def test_auto_order(monkeypatch):
    monkeypatch.delenv("TINYGPT_DEVICE", raising=False)
    want = "cuda" if HAS_CUDA else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert pick_device().type == want
    assert pick_device("auto").type == want


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu", "cpu0", "cuda:-1"])
def test_unknown_device_is_one_sentence(name):
    with pytest.raises(ValueError) as e:
        pick_device(name)
    msg = str(e.value)
    assert "\n" not in msg and msg.endswith(".") and name in msg
    assert "auto, cpu, cuda, cuda:N or mps" in msg


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU")
def test_missing_cuda_is_one_sentence(monkeypatch):
    for name in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(ValueError) as e:
            pick_device(name)
        assert "\n" not in str(e.value) and "no" in str(e.value) and "cpu" in str(e.value)
    monkeypatch.setenv("TINYGPT_DEVICE", "cuda")
    with pytest.raises(ValueError, match="TINYGPT_DEVICE=cuda"):
        pick_device()


def test_cpu_behaviour_is_unchanged():
    cpu = torch.device("cpu")
    assert fast_dtype(cpu) == torch.bfloat16  # the CPU fast mode stays oneDNN's bf16
    with autocast(cpu):  # no autocast on the CPU: training numbers are what they were
        assert not torch.is_autocast_enabled("cpu")
    assert peak_memory(cpu) is None  # on the CPU, memory is measured as RSS
    assert model_device(GPT(GPTConfig.from_preset("tiny"))) == cpu


@gpu
@pytest.mark.gpu
def test_cuda_model_samples_and_trains_on_the_gpu():
    from tinygpt.sampling import generate
    from tinygpt.train import TrainConfig, train

    dev = pick_device("cuda")
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=32)
    cpu_model = GPT(cfg).eval()
    gpu_model = GPT(cfg).to(dev).eval()
    gpu_model.load_state_dict(cpu_model.state_dict())
    idx = torch.randint(0, 64, (2, 5))
    a = generate(cpu_model, idx, 8, temperature=0)
    b = generate(gpu_model, idx, 8, temperature=0)  # CPU ids in, CPU ids out
    assert b.device.type == "cpu" and torch.equal(a, b)
    data = torch.randint(0, 64, (3000,))
    res = train(gpu_model, data[:2500], data[2500:], TrainConfig(steps=5, batch_size=4, context=16, eval_interval=5))
    assert res["steps"] == 5 and res["val_loss"] is not None
    assert peak_memory(dev) > 0


def test_device_benchmark_runs_on_this_machine():
    """benchmarks/bench_device.py --quick: the GPU benchmark's code path runs here too (tiny shapes)."""
    import json
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = dict(os.environ, TINYGPT_DEVICE="cpu", HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_device.py"), "--quick", "--json"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["device"].startswith("CPU")
    assert report["train"]["tokens_per_s"] > 0 and report["train"]["mfu"] is None  # no peak known for a CPU
    for g in report["generate"].values():
        assert g["tinygpt"] > 0 and g["transformers"] > 0 and g["ratio"] > 0


def test_zerogpu_wrapper_is_the_identity_elsewhere(monkeypatch):
    import gradio as gr

    from tabs.kit.gpu import gpu, on_zerogpu, wrap_handlers

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)

    def handler(x):
        return x

    assert not on_zerogpu() and gpu(60)(handler) is handler
    for off in ("", "0", "false"):
        assert not on_zerogpu({"SPACES_ZERO_GPU": off})
    with gr.Blocks() as demo:
        box = gr.Textbox()
        box.submit(handler, box, box, api_name="sample")
    before = {k: f.fn for k, f in demo.fns.items()}
    assert wrap_handlers(demo) == []
    assert {k: f.fn for k, f in demo.fns.items()} == before  # not one handler touched


def test_zerogpu_wrapper_uses_spaces_gpu_there(monkeypatch):
    import sys
    import types

    import gradio as gr

    from tabs.kit.gpu import GPU_SECONDS, gpu, wrap_handlers

    calls = []
    fake = types.ModuleType("spaces")

    def GPU(duration=None):  # noqa: N802 - the real decorator's name
        def deco(fn):
            calls.append((fn.__name__, duration))
            return fn
        return deco

    fake.GPU = GPU
    monkeypatch.setitem(sys.modules, "spaces", fake)
    env = {"SPACES_ZERO_GPU": "true"}

    def train_handler(x):
        return x

    gpu(120, env)(train_handler)
    assert calls == [("train_handler", 120)]
    with gr.Blocks() as demo:
        box = gr.Textbox()
        box.submit(train_handler, box, box, api_name="train")
        box.change(lambda x: x, box, box, api_name="not_heavy")
    assert wrap_handlers(demo, env=env) == ["train"]
    assert calls[-1] == ("train_handler", GPU_SECONDS["train"])
