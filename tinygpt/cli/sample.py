"""`python -m tinygpt sample`: generate text with nanoGPT's sample.py knobs (the Sampling tab's command);
--layers runs only some blocks, as the Layer pruning tab does."""
from __future__ import annotations

from ..defaults import SAMPLE
from ..dtypes import FAST
from .common import add_dtype, add_seed, emit, load, model_options, read_start


def cmd_sample(a) -> int:
    import torch

    from ..sampling import check_sampling_args, encode_prompt, generate

    top_p = None if a.top_p == 1.0 else a.top_p
    a.top_k = a.top_k or None  # --top-k 0 = off, as in the Sampling tab
    check_sampling_args(a.temperature, a.top_k, a.top_p)
    if a.num_samples < 1 or a.max_new_tokens < 0:
        raise ValueError("--num-samples must be >= 1 and --max-new-tokens >= 0.")
    start = read_start(a.start)
    torch.manual_seed(a.seed)
    model, tok = load(a, a.dtype)
    layers = None if a.layers is None else named_layers_or_list(a.layers, model)
    x = torch.tensor([encode_prompt(tok, start)] * a.num_samples, dtype=torch.long)  # (num_samples, T)
    gen = torch.Generator().manual_seed(a.seed)
    out = generate(model, x, a.max_new_tokens, a.temperature, a.top_k, top_p, gen, layers=layers)
    samples = [tok.decode(row.tolist()) for row in out]
    report = {"samples": samples, "model": model.info.name, "fallback": model.info.fallback, "layers": layers}
    return emit(a, report, [line for s in samples for line in (s, "---------------")])


def named_layers_or_list(spec: str, model) -> list:
    """--layers 0,2,4, or a configuration of the Layer pruning tab: even, odd, first-half, last-half, full."""
    from ..interpret.pruning import CONFIGS, named_layers

    key = spec.strip().lower().replace("-", " ")
    if key in CONFIGS and key != "custom":
        return named_layers(key, model.config.n_layer)
    return model.check_layers(spec)


def register(sub) -> None:
    d = SAMPLE
    s = sub.add_parser("sample", parents=[model_options(d["model"])],
                       help="generate text (like nanoGPT's sample.py)")
    s.add_argument("--start", default=d["start"], help='prompt, or FILE:path to read it from a file')
    s.add_argument("--num-samples", type=int, default=d["num_samples"])
    s.add_argument("--max-new-tokens", type=int, default=d["max_new_tokens"])
    s.add_argument("--temperature", type=float, default=d["temperature"])
    s.add_argument("--top-k", type=int, default=d["top_k"], help="keep the k most likely tokens (0 = off)")
    s.add_argument("--top-p", type=float, default=d["top_p"])
    add_seed(s, d["seed"])
    add_dtype(s, ("fp32", FAST), d["dtype"])
    s.add_argument("--layers", default=d["layers"], help="blocks to run, e.g. 0,2,4 or even/odd/first-half/last-half")
    s.set_defaults(func=cmd_sample)
