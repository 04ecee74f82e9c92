"""The GPT model: a readable nanoGPT-style transformer whose parameter names are GPT-2's checkpoint keys.

    idx (B, T) -> wte + wpe -> drop -> h[0..n_layer-1] -> ln_f -> lm_head -> logits (B, T, vocab)
    each block:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))

`forward` always returns `(logits, loss)` (loss is None without targets), as nanoGPT. Extras for teaching:
`layers=[...]` runs a chosen subset/order of blocks (pruning); `hidden_states` gives the residual stream after
every block (logit lens, contextual embeddings) and `attention_weights` the softmax weights of every head; the
config can turn off the causal mask / LayerNorm / 1/sqrt(d_k) scaling; a `KVCache` makes generation incremental.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import GPTConfig
from .positions import rope_cos_sin, rope_rotate, sinusoidal_rows


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's has no `bias=False` before 2.1 in all paths)."""

    def __init__(self, ndim: int, bias: bool, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """Root-mean-square norm (LLaMA): x / rms(x) * weight; no mean subtraction, no bias."""

    def __init__(self, ndim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()  # (..., C): the mean square in float32, as LLaMA does
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def make_norm(config: GPTConfig) -> nn.Module:
    """The normalisation layer the config asks for (Identity when the LayerNorm ablation switch is off)."""
    if not config.layernorm:
        return nn.Identity()
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, config.layer_norm_epsilon)
    return LayerNorm(config.n_embd, config.bias, config.layer_norm_epsilon)


class KVCache:
    """Keys and values of every run block, preallocated for `max_len` positions.

    k[i], v[i]: (B, n_kv_head, max_len, hs) for the i-th block *in the order run*; `pos` = filled length.
    A list of caches can be passed to the model instead of one (continuous batching, tinygpt.batching): each
    cache then holds `batch` consecutive rows of the input, at its own position.
    """

    def __init__(self, n_blocks: int, batch: int, n_kv_head: int, max_len: int, head_dim: int, dtype, device):
        shape = (batch, n_kv_head, max_len, head_dim)
        self.k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_blocks)]
        self.v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_blocks)]
        self.pos = 0
        self.max_len = max_len
        self.batch = batch


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.hs = config.n_head, config.kv_heads, config.head_dim
        kv_dim = self.n_kv_head * self.hs
        # q, k, v for all heads in one matmul: (C) -> (n_head * hs + 2 * kv_dim); n_head * hs = C in GPT-2
        self.c_attn = nn.Linear(config.n_embd, config.attn_dim + 2 * kv_dim, bias=config.has_qkv_bias)
        self.c_proj = nn.Linear(config.attn_dim, config.n_embd, bias=config.bias)
        self.attn_dropout = config.attn_pdrop
        self.resid_dropout = nn.Dropout(config.resid_pdrop)
        self.causal = config.causal
        self.scale = 1.0 / math.sqrt(self.hs) if config.attn_scale else 1.0

    def forward(self, x, cache=None, layer_slot: int = 0, attn: Optional[list] = None, rope=None):
        """x (B, T, C) -> (B, T, C). attn: if a list, the softmax weights (B, nh, T, past+T) are appended.
        rope: (cos, sin) of this step's positions, (T, hs) each, to rotate q and k (RoPE models only).
        cache: a KVCache, or a list of KVCaches whose batches add up to B (rope then a list of (cos, sin), one
        per cache): the q/k/v projections run for all rows at once, attention runs per cache, so each group of
        rows attends only to its own keys, exactly as if it ran alone."""
        B, T, C = x.size()
        A = self.n_head * self.hs  # width of all query heads (= C in GPT-2)
        q, k, v = self.c_attn(x).split([A, self.n_kv_head * self.hs, self.n_kv_head * self.hs], dim=2)
        q = q.view(B, T, self.n_head, self.hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_kv_head, self.hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, self.n_kv_head, self.hs).transpose(1, 2)  # (B, nkv, T, hs)
        if isinstance(cache, (list, tuple)):  # continuous batching: one group of rows per cache
            ys, r0 = [], 0
            for c, rp in zip(cache, rope if rope is not None else [None] * len(cache)):
                r1 = r0 + c.batch
                ys.append(self._attend(q[r0:r1], k[r0:r1], v[r0:r1], c, layer_slot, attn, rp))
                r0 = r1
            y = torch.cat(ys)  # (B, nh, T, hs)
        else:
            y = self._attend(q, k, v, cache, layer_slot, attn, rope)
        y = y.transpose(1, 2).contiguous().view(B, T, A)  # re-assemble heads side by side
        return self.resid_dropout(self.c_proj(y))

    def _attend(self, q, k, v, cache: Optional[KVCache], layer_slot: int, attn: Optional[list], rope):
        """q (B, nh, T, hs), k and v (B, nkv, T, hs) of this step -> y (B, nh, T, hs), through the cache."""
        T = q.size(2)
        if rope is not None:  # rotate q and k by their absolute positions: q.k then depends on m - n only
            q, k = rope_rotate(q, *rope), rope_rotate(k, *rope)
        past = 0
        if cache is not None:
            past = cache.pos
            cache.k[layer_slot][:, :, past:past + T] = k
            cache.v[layer_slot][:, :, past:past + T] = v
            k = cache.k[layer_slot][:, :, :past + T]  # (B, nkv, past+T, hs)
            v = cache.v[layer_slot][:, :, :past + T]
        if self.n_kv_head != self.n_head:  # GQA: each group of query heads shares one k/v head
            rep = self.n_head // self.n_kv_head
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        # Query i (absolute position past+i) may see keys 0..past+i when causal; a single new
        # query (T == 1) may see everything in the cache, so it needs no mask at all.
        mask, is_causal = None, False
        if self.causal and T > 1:
            if past == 0:
                is_causal = True
            else:
                mask = torch.ones(T, past + T, dtype=torch.bool, device=q.device).tril(diagonal=past)
        if attn is not None:  # explicit path: the attention weights themselves, (B, nh, T, past+T)
            att = (q @ k.transpose(-2, -1)) * self.scale
            if is_causal:
                mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
            if mask is not None:
                att = att.masked_fill(~mask, float("-inf"))
            att = F.softmax(att, dim=-1)
            attn.append(att)
            return att @ v
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, scale=self.scale,
            dropout_p=self.attn_dropout if self.training else 0.0)  # (B, nh, T, hs)


class MLP(nn.Module):
    """The feed-forward layer: GPT-2's c_fc -> GELU -> c_proj, or LLaMA's gated SiLU(c_gate x) * c_fc x -> c_proj."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.ffn_dim, bias=config.bias)
        self.gated = config.mlp == "gated"
        if self.gated:
            self.c_gate = nn.Linear(config.n_embd, config.ffn_dim, bias=config.bias)
            self.act = nn.SiLU()  # SwiGLU (Shazeer 2020), as LLaMA
        else:
            self.act = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.c_proj = nn.Linear(config.ffn_dim, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x, moe: Optional[list] = None):
        h = self.act(self.c_gate(x)) * self.c_fc(x) if self.gated else self.act(self.c_fc(x))  # (B, T, ff)
        return self.dropout(self.c_proj(h))


class MoE(nn.Module):
    """Mixture-of-Experts feed-forward layer: a router picks the top-k of n_experts MLPs for every token.

    top-1 (Switch Transformer, Fedus et al. 2021): the token's output is gate probability x its expert's output;
    top-k > 1 renormalises the k gate probabilities (as Mixtral). Dropless: every token reaches its experts (no
    capacity limit), so the load per expert is what the router decided. The load-balancing loss is Switch's
    aux = n_experts * sum_e f_e * P_e, with f_e the fraction of assignments to expert e and P_e the mean router
    probability of e; it is 1 when the load is uniform and grows when the router favours a few experts.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_experts, self.top_k = config.n_experts, config.moe_top_k
        self.router = nn.Linear(config.n_embd, config.n_experts, bias=False)
        self.experts = nn.ModuleList([MLP(config) for _ in range(config.n_experts)])

    def forward(self, x, moe: Optional[list] = None):
        B, T, C = x.shape
        flat = x.reshape(-1, C)  # (N, C), N = B * T tokens
        probs = F.softmax(self.router(flat).float(), dim=-1)  # (N, E)
        gate, choice = probs.topk(self.top_k, dim=-1)  # (N, k) each
        if self.top_k > 1:
            gate = gate / gate.sum(-1, keepdim=True)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows, slot = (choice == e).nonzero(as_tuple=True)  # the tokens routed to expert e, and which of their k
            if rows.numel():
                out.index_add_(0, rows, expert(flat[rows]) * gate[rows, slot, None].to(flat.dtype))
        if moe is not None:
            counts = torch.bincount(choice.reshape(-1), minlength=self.n_experts)  # (E,) assignments per expert
            f = counts.float() / choice.numel()
            aux = self.n_experts * (f * probs.mean(0)).sum()  # gradient flows through P_e only
            moe.append({"aux": aux, "counts": counts, "choice": choice[:, 0].view(B, T), "probs": probs.view(B, T, -1)})
        return out.view(B, T, C)


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MoE(config) if config.n_experts else MLP(config)

    def forward(self, x, cache: Optional[KVCache] = None, layer_slot: int = 0, attn: Optional[list] = None,
                rope: Optional[tuple] = None, moe: Optional[list] = None):
        x = x + self.attn(self.ln_1(x), cache, layer_slot, attn, rope)  # communicate across positions
        x = x + self.mlp(self.ln_2(x), moe)  # compute per position
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        modules = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))  # token embeddings (vocab, C)
        if config.pos_encoding == "learned":
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)  # position embeddings (block, C)
        # "sinusoidal" adds a fixed table (no parameters); "rope" rotates q and k in attention; "none" has nothing
        self.transformer = nn.ModuleDict(dict(
            **modules,
            drop=nn.Dropout(config.embd_pdrop),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=make_norm(config),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight  # one matrix, two uses
        if not any(p.is_meta for p in self.parameters()):
            self.apply(self._init_weights)
            # GPT-2 paper: scale the init of projections into the residual stream by 1/sqrt(2 * n_layer)
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # ---- helpers ---------------------------------------------------------------------------
    def num_params(self) -> int:
        """Trainable parameters, the tied matrix counted once (what GPT-2's 124M counts)."""
        return sum(p.numel() for p in self.parameters())

    def check_layers(self, layers) -> list[int]:
        """The blocks to run: None = all, else a list of block indices (or "0,2,4"), checked."""
        return parse_layers(layers, self.config.n_layer)

    def new_cache(self, batch: int, max_len: int, n_blocks: Optional[int] = None) -> KVCache:
        c = self.config
        p = self.transformer.wte.weight
        return KVCache(n_blocks or c.n_layer, batch, c.kv_heads, max_len, c.head_dim, p.dtype, p.device)

    # ---- forward ---------------------------------------------------------------------------
    def position_embedding(self, pos):
        """What is added to the token embeddings for positions pos (T,): (T, C), or 0 when positions enter
        elsewhere (RoPE) or not at all ("none")."""
        c = self.config
        if c.pos_encoding == "learned":
            return self.transformer.wpe(pos)
        if c.pos_encoding == "sinusoidal":
            return sinusoidal_rows(pos, c.n_embd).to(self.transformer.wte.weight.dtype)
        return 0

    def _run(self, idx, layers=None, cache=None, hidden: Optional[list] = None,
             attn: Optional[list] = None, moe: Optional[list] = None):
        """Embeddings and the chosen blocks: idx (B, T) -> residual stream (B, T, C) before ln_f.

        hidden: if a list, receives the stream after the embeddings and after each block run.
        attn: if a list, receives each run block's attention weights (B, nh, T, past+T).
        moe: if a list, receives each MoE block's routing (aux loss, expert counts, chosen expert per token).
        """
        c = self.config
        idx = idx.to(self.transformer.wte.weight.device)  # callers pass CPU ids; the model may sit on a GPU
        B, T = idx.size()
        layers = self.check_layers(layers)
        groups = list(cache) if isinstance(cache, (list, tuple)) else None  # continuous batching
        if groups is not None and sum(g.batch for g in groups) != B:
            raise ValueError(f"The caches hold {sum(g.batch for g in groups)} rows but the input has {B}.")
        caches = groups if groups is not None else [cache] if cache is not None else []  # the caches to advance
        pasts = [g.pos for g in caches] or [0]
        if max(pasts) + T > self.config.block_size:
            raise ValueError(f"Sequence of {max(pasts) + T} tokens is longer than the context "
                             f"({self.config.block_size}).")
        # positions per group (each group of rows continues from its own cache), each computed exactly as for a
        # single cache, so a row's numbers do not depend on its neighbours in the batch
        pos = [torch.arange(p, p + T, dtype=torch.long, device=idx.device) for p in pasts]  # (T,) each
        pe = [self.position_embedding(p) for p in pos]  # (T, C) each, or 0
        rope = [rope_cos_sin(p, c.head_dim, c.rope_base) for p in pos] if c.pos_encoding == "rope" else None
        if groups is None:
            pe, rope = pe[0], rope[0] if rope else None  # (T, C); (T, hs) x 2
        elif torch.is_tensor(pe[0]):  # 0 when positions enter through RoPE or not at all
            pe = torch.cat([e.expand(g.batch, T, -1) for e, g in zip(pe, groups)])  # (B, T, C)
        else:
            pe = 0
        x = self.transformer.drop(self.transformer.wte(idx) + pe)  # (B, T, C)
        if hidden is not None:
            hidden.append(x)
        for slot, i in enumerate(layers):
            x = self.transformer.h[i](x, cache, slot, attn, rope, moe)
            if hidden is not None:
                hidden.append(x)
        for g in caches:
            g.pos += T
        return x

    def logits(self, x):
        """Residual stream (..., C) -> logits (..., vocab): the final LayerNorm, then the LM head."""
        x = self.transformer.ln_f(x)
        # as one 2-D matmul: a strided 3-D input would make some dtypes copy the (vocab, C) weight per row
        return self.lm_head(x.reshape(-1, x.size(-1))).view(*x.shape[:-1], -1)

    def forward(self, idx, targets=None, layers=None, cache=None, last_only: bool = False):
        """idx (B, T) token ids -> (logits (B, T, vocab), loss), as nanoGPT; loss is None without targets.

        layers: block indices to run, in order (None = all). cache: a KVCache; positions continue from
        cache.pos and the cache advances by T. Or a list of KVCaches whose batches add up to B (continuous
        batching): each group of rows continues from its own cache's position and attends only to its own
        cache. last_only: logits for the last position only, (B, 1, vocab).
        """
        moe: Optional[list] = [] if self.config.n_experts and targets is not None else None
        x = self._run(idx, layers, cache, moe=moe)
        if last_only:
            x = x[:, -1:, :]  # generation only needs the next-token logits
        logits = self.logits(x)  # (B, T, vocab)
        loss = None
        if targets is not None:
            targets = targets.to(logits.device)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                                   ignore_index=-1)
            if moe:  # Switch Transformer: + weight * load-balancing loss, averaged over the MoE blocks
                loss = loss + self.config.moe_aux_weight * torch.stack([m["aux"] for m in moe]).mean()
        return logits, loss

    def hidden_states(self, idx, layers=None) -> list:
        """The residual stream after the embeddings and after each run block: len(layers) + 1 of (B, T, C).

        What the logit lens and contextual embeddings read."""
        hidden: list = []
        self._run(idx, layers, hidden=hidden)
        return hidden

    def moe_routing(self, idx, layers=None) -> list:
        """For an MoE model: per run block a dict {aux (load-balancing loss), counts (n_experts,) tokens sent to
        each expert, choice (B, T) the top expert of every token, probs (B, T, n_experts) the router's softmax}."""
        if not self.config.n_experts:
            raise ValueError("This model has no Mixture-of-Experts layers (n_experts is 0).")
        moe: list = []
        self._run(idx, layers, moe=moe)
        return moe

    def attention_weights(self, idx, layers=None) -> list:
        """The softmax attention weights of each run block, exactly as the forward pass uses them:
        one (B, n_head, T, T) per block (rows sum to 1; zero above the diagonal when causal)."""
        attn: list = []
        self._run(idx, layers, attn=attn)
        return attn


def parse_layers(spec, n_layer: int) -> list[int]:
    """Which blocks to run. None -> all; a list of ints or text like "0, 2,4" -> that list, checked against
    n_layer. Repeats and any order are allowed (the blocks run in the order given).
    Raises ValueError with a plain sentence for an empty list, non-numbers or out-of-range blocks."""
    if spec is None:
        return list(range(n_layer))
    if isinstance(spec, str):
        parts = [t for t in spec.replace(" ", "").split(",") if t != ""]
        try:
            spec = [int(t) for t in parts]
        except ValueError:
            raise ValueError(f"Layers must be whole numbers separated by commas, like 0,2,4 (got {spec!r}).") from None
    layers = list(spec)
    if not layers:
        raise ValueError(f"Choose at least one block to run, e.g. 0,2,4 (blocks are numbered 0 to {n_layer - 1}).")
    bad = [i for i in layers if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_layer]
    if bad:
        raise ValueError(f"Block numbers must be between 0 and {n_layer - 1} for this model; got {bad}.")
    return layers
