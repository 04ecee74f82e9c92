"""GPTConfig: every size and switch of a GPT in one dataclass, with the GPT-2/GPT-3 presets.

Field names follow nanoGPT; `to_hf_dict` / `from_hf_dict` translate to and from the Hugging Face
`config.json` keys (n_positions, tie_word_embeddings, ...) so checkpoints stay loadable by transformers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Optional

GPT2_VOCAB = 50257  # 50,000 BPE merges + 256 byte tokens + <|endoftext|>
POS_ENCODINGS = ("learned", "sinusoidal", "rope", "none")
MLPS = ("gelu", "gated")
NORMS = ("layernorm", "rmsnorm")


@dataclass
class GPTConfig:
    vocab_size: int = GPT2_VOCAB  # number of token ids the embedding table and LM head cover
    block_size: int = 1024  # longest context, in tokens (rows of the position table `wpe`)
    n_layer: int = 12  # number of transformer blocks stacked in `h`
    n_head: int = 12  # query heads per attention layer; head size = n_embd // n_head
    n_embd: int = 768  # d_model: width of the residual stream
    n_kv_head: Optional[int] = None  # key/value heads (GQA/MQA); None = n_head (ordinary multi-head attention)
    n_inner: Optional[int] = None  # width of the feed-forward hidden layer; None = 4 * n_embd
    bias: bool = True  # biases in Linear layers and LayerNorms (GPT-2: True)
    tie_weights: bool = True  # LM head reuses the token embedding matrix `wte` (GPT-2: True)
    embd_pdrop: float = 0.0  # dropout on token + position embeddings
    attn_pdrop: float = 0.0  # dropout on the attention weights
    resid_pdrop: float = 0.0  # dropout on each block's output before it joins the shortcut (residual)
    layer_norm_epsilon: float = 1e-5  # LayerNorm's epsilon, as in GPT-2
    causal: bool = True  # causal mask: position t only sees positions <= t (off = the "no mask" experiment)
    layernorm: bool = True  # normalisation layers on (off = ablation: the residual stream is left unnormalised)
    attn_scale: bool = True  # divide attention scores by sqrt(head size) (off = ablation)
    # ---- architecture options beyond GPT-2 (the defaults are GPT-2's) ----
    pos_encoding: str = "learned"  # "learned" (GPT-2's wpe), "sinusoidal" (fixed table), "rope" (rotary), "none"
    rope_base: float = 10000.0  # RoPE's base: pair i turns by position * base^(-2i/head_dim)
    head_size: Optional[int] = None  # width of each head; None = n_embd // n_head (set it to decouple, as GPT-3 XL)
    mlp: str = "gelu"  # "gelu" (GPT-2: c_fc, GELU, c_proj) or "gated" (LLaMA's SwiGLU: c_fc and c_gate, SiLU, c_proj)
    norm: str = "layernorm"  # "layernorm" (weight + bias) or "rmsnorm" (weight only, LLaMA)
    qkv_bias: Optional[bool] = None  # biases on q, k, v only (Qwen2: True with bias False); None = same as bias
    n_experts: int = 0  # Mixture-of-Experts: expert MLPs per block with a router (0 = the dense MLP)
    moe_top_k: int = 1  # experts each token is sent to (1 = Switch Transformer routing)
    moe_aux_weight: float = 0.01  # weight of the load-balancing loss added to the training loss

    def __post_init__(self):
        self.validate()

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        """Width of one attention head (q, k and v alike)."""
        return self.n_embd // self.n_head if self.head_size is None else self.head_size

    @property
    def attn_dim(self) -> int:
        """Width of all query heads side by side: n_head * head_dim (= n_embd in GPT-2)."""
        return self.n_head * self.head_dim

    @property
    def has_qkv_bias(self) -> bool:
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def ffn_dim(self) -> int:
        return 4 * self.n_embd if self.n_inner is None else self.n_inner

    def validate(self) -> None:
        """Raise ValueError with a plain sentence when the shape cannot be built."""
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive whole number (got {v!r}).")
        if self.n_kv_head is not None and (not isinstance(self.n_kv_head, int) or self.n_kv_head < 1):
            raise ValueError(f"n_kv_head must be a positive whole number (got {self.n_kv_head!r}).")
        if self.n_inner is not None and (not isinstance(self.n_inner, int) or self.n_inner < 1):
            raise ValueError(f"n_inner must be a positive whole number (got {self.n_inner!r}).")
        if self.head_size is not None and (not isinstance(self.head_size, int) or self.head_size < 1):
            raise ValueError(f"head_size must be a positive whole number (got {self.head_size!r}).")
        if self.head_size is None and self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}), or set the head "
                             f"size explicitly.")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head ({self.n_head}) must be divisible by n_kv_head ({self.kv_heads}).")
        for name in ("embd_pdrop", "attn_pdrop", "resid_pdrop"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1) (got {p!r}).")
        for name, allowed in (("pos_encoding", POS_ENCODINGS), ("mlp", MLPS), ("norm", NORMS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)} (got {getattr(self, name)!r}).")
        if self.pos_encoding == "rope" and self.head_dim % 2:
            raise ValueError(f"RoPE turns pairs of numbers, so the head size must be even (got {self.head_dim}).")
        if not self.rope_base > 1:
            raise ValueError(f"rope_base must be larger than 1 (got {self.rope_base!r}).")
        if not isinstance(self.n_experts, int) or self.n_experts < 0 or self.n_experts == 1:
            raise ValueError(f"n_experts must be 0 (dense) or at least 2 (got {self.n_experts!r}).")
        if self.n_experts and not 1 <= self.moe_top_k <= self.n_experts:
            raise ValueError(f"moe_top_k must be between 1 and n_experts ({self.n_experts}) (got {self.moe_top_k!r}).")
        if not self.moe_aux_weight >= 0:
            raise ValueError(f"moe_aux_weight must be >= 0 (got {self.moe_aux_weight!r}).")

    # ---- presets -------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides) -> "GPTConfig":
        """GPT-2 family, the eight GPT-3 sizes, LLaMA-7B, Mistral-7B, Llama-3-8B, Mixtral-8x7B, and `tiny` for tests
        (sources in the comments of PRESETS)."""
        key = name.lower().strip()
        if key not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of: {', '.join(PRESETS)}.")
        return replace(cls(**PRESETS[key]), **overrides)

    def replace(self, **changes) -> "GPTConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    # ---- Hugging Face config.json ---------------------------------------------------------
    def to_hf_dict(self) -> dict:
        """GPT2Config-compatible keys, plus our own switches under `tinygpt`."""
        return {
            "model_type": "gpt2",
            "architectures": ["GPT2LMHeadModel"],
            "vocab_size": self.vocab_size,
            "n_positions": self.block_size,
            "n_ctx": self.block_size,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_embd": self.n_embd,
            "n_inner": self.n_inner,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "embd_pdrop": self.embd_pdrop,
            "attn_pdrop": self.attn_pdrop,
            "resid_pdrop": self.resid_pdrop,
            "tie_word_embeddings": self.tie_weights,
            "bos_token_id": 50256,
            "eos_token_id": 50256,
            "tinygpt": {"bias": self.bias, "n_kv_head": self.n_kv_head, "causal": self.causal,
                        "layernorm": self.layernorm, "attn_scale": self.attn_scale,
                        # architecture options: a checkpoint using any non-GPT-2 value loads only in tinygpt
                        "pos_encoding": self.pos_encoding, "rope_base": self.rope_base, "head_size": self.head_size,
                        "mlp": self.mlp, "norm": self.norm, "qkv_bias": self.qkv_bias, "n_experts": self.n_experts,
                        "moe_top_k": self.moe_top_k, "moe_aux_weight": self.moe_aux_weight},
        }

    @classmethod
    def from_hf_dict(cls, d: dict) -> "GPTConfig":
        extra = d.get("tinygpt") or {}
        act = d.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
            raise ValueError(f"Unsupported activation {act!r} in config.json.")
        known = {f.name for f in fields(cls)}
        return cls(
            vocab_size=d["vocab_size"],
            block_size=d.get("n_positions", d.get("n_ctx", 1024)),
            n_layer=d["n_layer"],
            n_head=d["n_head"],
            n_embd=d["n_embd"],
            n_inner=d.get("n_inner"),
            layer_norm_epsilon=d.get("layer_norm_epsilon", 1e-5),
            tie_weights=d.get("tie_word_embeddings", True),
            # training-time dropout as the checkpoint specifies (GPT-2's own config says 0.1 each)
            embd_pdrop=d.get("embd_pdrop", 0.0), attn_pdrop=d.get("attn_pdrop", 0.0),
            resid_pdrop=d.get("resid_pdrop", 0.0),
            **{k: v for k, v in extra.items() if k in known},
        )


PRESETS: dict[str, dict] = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),  # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),  # 350M
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),  # 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),  # 1558M
    "gpt3": dict(n_layer=96, n_head=96, n_embd=12288, block_size=2048),  # 175B
    # The eight GPT-3 sizes of Brown et al. 2020, "Language Models are Few-Shot Learners", Table 2.1 (n_layers,
    # d_model, n_heads, d_head; context 2048, d_ff = 4·d_model, GPT-2's vocabulary and blocks). head_size is set
    # where d_head differs from d_model / n_heads: XL (24 x 128 = 3072 vs 2048) and 13B (40 x 128 = 5120 vs 5140).
    # Counted exactly, the table's XL shape has 1.52B parameters, not its "1.3B" label (that label fits a
    # 2048-wide attention: 1.32B); the other seven land within 2% of their labels.
    "gpt3-small": dict(n_layer=12, n_head=12, n_embd=768, block_size=2048),  # 125M
    "gpt3-medium": dict(n_layer=24, n_head=16, n_embd=1024, block_size=2048),  # 350M
    "gpt3-large": dict(n_layer=24, n_head=16, n_embd=1536, block_size=2048),  # 760M
    "gpt3-xl": dict(n_layer=24, n_head=24, n_embd=2048, head_size=128, block_size=2048),  # 1.3B
    "gpt3-2.7b": dict(n_layer=32, n_head=32, n_embd=2560, block_size=2048),  # 2.7B
    "gpt3-6.7b": dict(n_layer=32, n_head=32, n_embd=4096, block_size=2048),  # 6.7B
    "gpt3-13b": dict(n_layer=40, n_head=40, n_embd=5140, head_size=128, block_size=2048),  # 13B
    "gpt3-175b": dict(n_layer=96, n_head=96, n_embd=12288, block_size=2048),  # 175B (= "gpt3")
    # LLaMA-7B (Touvron et al. 2023, "LLaMA", Table 2: 32 layers, d 4096, 32 heads; SwiGLU FFN of 2/3·4d rounded
    # to 11008, RMSNorm, RoPE, no biases, untied head, 32,000-token vocabulary): 6,738,415,616 parameters. The
    # context is LLaMA 2-7B's 4096 (same parameters; LLaMA-1 used 2048).
    "llama-7b": dict(n_layer=32, n_head=32, n_embd=4096, block_size=4096, n_inner=11008, vocab_size=32000,
                     bias=False, tie_weights=False, mlp="gated", norm="rmsnorm", pos_encoding="rope"),
    # Mistral-7B (Jiang et al. 2023, "Mistral 7B", Table 1: 32 layers, d 4096, 32 heads of 128, 8 KV heads, FFN
    # 14336, vocab 32000, context 8192; sliding-window attention does not change the parameters): 7,241,732,096.
    "mistral-7b": dict(n_layer=32, n_head=32, n_kv_head=8, n_embd=4096, block_size=8192, n_inner=14336,
                       vocab_size=32000, bias=False, tie_weights=False, mlp="gated", norm="rmsnorm",
                       pos_encoding="rope"),
    # Llama-3-8B-shaped (Llama Team 2024, "The Llama 3 Herd of Models", Table 3, and the Hub's
    # meta-llama/Meta-Llama-3-8B config.json: 32 layers, d 4096, 32 heads, 8 KV heads, FFN 14336, vocab 128256,
    # RoPE base 500000, context 8192, untied): 8,030,261,248.
    "llama3-8b": dict(n_layer=32, n_head=32, n_kv_head=8, n_embd=4096, block_size=8192, n_inner=14336,
                      vocab_size=128256, bias=False, tie_weights=False, mlp="gated", norm="rmsnorm",
                      pos_encoding="rope", rope_base=500000.0),
    # Mixtral-8x7B (Jiang et al. 2024, "Mixtral of Experts", Table 1: Mistral-7B's blocks with 8 expert FFNs per
    # layer, top-2 routing, context 32768): 46,702,792,704 parameters, 12,879,925,248 active per token.
    "mixtral-8x7b": dict(n_layer=32, n_head=32, n_kv_head=8, n_embd=4096, block_size=32768, n_inner=14336,
                         vocab_size=32000, bias=False, tie_weights=False, mlp="gated", norm="rmsnorm",
                         pos_encoding="rope", n_experts=8, moe_top_k=2),
    # The embedded default model shipped in assets/ (see README for the training command).
    "tiny-shakespeare": dict(n_layer=6, n_head=4, n_embd=128, block_size=256),
    # Tiny model for tests: builds and runs in milliseconds (minGPT's gpt-nano).
    "tiny": dict(n_layer=4, n_head=4, n_embd=32, block_size=64, vocab_size=GPT2_VOCAB),
}
