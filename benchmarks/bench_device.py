"""Training and generation on the device tinygpt picks (a GPU when there is one): tokens/s, model FLOPs
utilisation, and generation with the KV cache against transformers' `generate` on the same device.

Training: the GPT-2-124M shape at context 1,024 (nanoGPT's reproduction shape), AdamW, bf16 autocast on CUDA
(tinygpt.train's own loop: `train(...)` with the batches on the device), timed after warm-up steps.
MFU = achieved FLOP/s ÷ the device's peak dense bf16 FLOP/s, with FLOPs per token from the calculator
(tinygpt.compute.flops_per_token: Kaplan's 6N + 6·L·T·A; nanoGPT's estimate counts the attention square in full,
6N + 12·L·T·A, and is printed too). Goal on an H100 in bf16: MFU >= 40% (nanoGPT's anchor).
Generation: 3 samples x 100 new tokens, top-k 50, the same random weights in both libraries; goal <= 1.0x.

    python benchmarks/bench_device.py [--device auto] [--steps 20] [--batch 16] [--compile] [--json]
    python benchmarks/bench_device.py --quick      # tiny shapes: checks the script runs (CPU is fine)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from tinygpt import GPT, GPTConfig  # noqa: E402
from tinygpt.checkpoint import load_checkpoint  # noqa: E402
from tinygpt.compute import flops_per_token  # noqa: E402
from tinygpt.device import autocast, device_name, fast_dtype, pick_device, synchronize  # noqa: E402
from tinygpt.sampling import generate  # noqa: E402
from tinygpt.train import TrainConfig, make_optimizer  # noqa: E402

# Peak dense bf16 tensor-core TFLOP/s by device name (vendor data sheets); --peak-tflops overrides.
PEAK_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.0, "H100": 989.4,
               "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0, "T4": 65.0}


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def bench_train(cfg: GPTConfig, device, batch: int, steps: int, warmup: int, compile_model: bool) -> dict:
    """Tokens/s of full training steps (forward, backward, clip, AdamW) at context cfg.block_size."""
    torch.manual_seed(0)
    model = GPT(cfg).to(device).train()
    tc = TrainConfig(batch_size=batch, context=cfg.block_size)
    opt = make_optimizer(list(model.parameters()), tc)
    net = torch.compile(model) if compile_model else model
    data = torch.randint(0, cfg.vocab_size, (steps + warmup, batch, cfg.block_size + 1))
    times = []
    for i in range(steps + warmup):
        x = data[i, :, :-1].to(device, non_blocking=True)
        y = data[i, :, 1:].to(device, non_blocking=True)
        synchronize(device)
        t = time.perf_counter()
        with autocast(device):
            _, loss = net(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    return {"step_s": step_s, "tokens_per_s": batch * cfg.block_size / step_s, "loss": float(loss.item())}


def bench_generate(cfg: GPTConfig, device, dtype, samples: int, new: int, repeats: int) -> dict:
    """tinygpt.generate vs transformers' generate: same weights, prompt, knobs and device; seconds (median)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf_cfg = GPT2Config(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, n_positions=cfg.block_size,
                        vocab_size=cfg.vocab_size, bos_token_id=cfg.vocab_size - 1, eos_token_id=cfg.vocab_size - 1)
    hf = GPT2LMHeadModel(hf_cfg).eval()
    with tempfile.TemporaryDirectory() as d:  # the same weights: ours are read from transformers' checkpoint
        hf.save_pretrained(d)
        ours, _ = load_checkpoint(d)
    ours.eval()
    hf, ours = hf.to(device, dtype), ours.to(device, dtype)
    prompt = torch.randint(0, cfg.vocab_size, (samples, 8))
    g = torch.Generator().manual_seed(0)

    def run_ours():
        generate(ours, prompt, new, temperature=1.0, top_k=50, generator=g)
        synchronize(device)

    def run_hf():
        with torch.inference_mode():
            hf.generate(prompt.to(device), max_new_tokens=new, min_new_tokens=new, do_sample=True, top_k=50,
                        pad_token_id=0)
        synchronize(device)

    out = {}
    for name, fn in (("tinygpt", run_ours), ("transformers", run_hf)):
        fn()  # warm-up (kernels, allocator)
    rounds = {"tinygpt": [], "transformers": []}
    for _ in range(repeats):  # interleaved: a busy device slows both alike
        for name, fn in (("tinygpt", run_ours), ("transformers", run_hf)):
            t = time.perf_counter()
            fn()
            rounds[name].append(time.perf_counter() - t)
    for name, ts in rounds.items():
        out[name] = statistics.median(ts)
    out["ratio"] = out["tinygpt"] / out["transformers"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N | mps (default: TINYGPT_DEVICE/auto)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (as nanoGPT does on a GPU)")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny shapes: check that the script runs")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    device = pick_device(a.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls outside autocast use TF32, as nanoGPT sets
        torch.backends.cudnn.allow_tf32 = True
    if a.quick:
        cfg = GPTConfig(vocab_size=512, block_size=64, n_layer=2, n_head=2, n_embd=64)
        a.steps, a.warmup, a.batch, a.repeats, new = 3, 1, 2, 1, 8
    else:
        cfg = GPTConfig.from_preset("gpt2")  # 124M, context 1,024
        new = 100
    fl = flops_per_token(cfg, cfg.block_size)
    nanogpt_flops = fl["per_token_train"] + 6 * cfg.n_layer * cfg.block_size * cfg.attn_dim
    report = {"device": device_name(device), "torch": torch.__version__, "shape": dict(
        n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, context=cfg.block_size, batch=a.batch)}
    tr = bench_train(cfg, device, a.batch, a.steps, a.warmup, a.compile)
    peak = peak_tflops(device, a.peak_tflops)
    tr["flops_per_token"] = fl["per_token_train"]
    tr["achieved_tflops"] = tr["tokens_per_s"] * fl["per_token_train"] / 1e12
    tr["peak_tflops"] = peak
    tr["mfu"] = tr["achieved_tflops"] / peak if peak else None
    tr["mfu_nanogpt_flops"] = tr["tokens_per_s"] * nanogpt_flops / 1e12 / peak if peak else None
    report["train"] = tr
    report["generate"] = {str(dt).replace("torch.", ""): bench_generate(cfg, device, dt, 3, new, a.repeats)
                          for dt in (torch.float32, fast_dtype(device))}
    if a.json:
        print(json.dumps(report, indent=2))
        return 0
    print(report["device"], "· torch", report["torch"])
    print(f"training {cfg.n_layer}x{cfg.n_embd}, context {cfg.block_size}, batch {a.batch}"
          f"{', compiled' if a.compile else ''}: {tr['tokens_per_s']:,.0f} tokens/s "
          f"({tr['step_s'] * 1e3:.1f} ms/step), {tr['achieved_tflops']:.1f} TFLOP/s")
    if peak:
        print(f"  MFU {tr['mfu']:.1%} of {peak:g} TFLOP/s (Kaplan FLOPs; {tr['mfu_nanogpt_flops']:.1%} with nanoGPT's"
              f" count) · goal >= 40% on an H100")
    else:
        print("  MFU: no peak known for this device (--peak-tflops sets one)")
    for dt, g in report["generate"].items():
        print(f"generation {dt}: tinygpt {g['tinygpt']:.3f} s vs transformers {g['transformers']:.3f} s -> "
              f"{g['ratio']:.2f}x (goal <= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
