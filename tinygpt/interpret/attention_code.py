"""Multi-head attention read line by line: the live source of `tinygpt.model.CausalSelfAttention` (never a copy)
with a comment on every line, and its parameter count from a config.

COMMENTS is keyed by the stripped code of a line (its own trailing `# ...` removed); a line that occurs several
times with different meanings (`else:`) has a tuple of comments, used in order. A test checks that every code line
of the live source has a comment and every comment still has its line, so this page cannot silently go stale.
"""
from __future__ import annotations

import ast
import inspect
import re
import textwrap

from ..config import GPTConfig

DOCSTRING = "<docstring>"

COMMENTS = {
    "class CausalSelfAttention(nn.Module):":
        "Multi-head self-attention: every position mixes in information from the positions it may see.",
    "def __init__(self, config: GPTConfig):":
        "Build the layer's weights from the model's config (sizes, switches).",
    "super().__init__()":
        "Let nn.Module register the parameters created below.",
    "self.n_head, self.n_kv_head, self.hs = config.n_head, config.kv_heads, config.head_dim":
        "nh query heads, nkv key/value heads (= nh in GPT-2) and the head size hs (= C / nh = 64 in GPT-2).",
    "kv_dim = self.n_kv_head * self.hs":
        "Width of all key heads together (and of all value heads): C in GPT-2.",
    "self.c_attn = nn.Linear(config.n_embd, config.attn_dim + 2 * kv_dim, bias=config.has_qkv_bias)":
        "One Linear layer makes q, k and v for every head at once: C -> 3C (weight 3C x C, bias 3C).",
    "self.c_proj = nn.Linear(config.attn_dim, config.n_embd, bias=config.bias)":
        "The output projection mixes the heads' results back into the residual stream: C -> C (weight C x C, "
        "bias C).",
    "self.attn_dropout = config.attn_pdrop":
        "Dropout probability for the attention weights (training only; 0 at inference).",
    "self.resid_dropout = nn.Dropout(config.resid_pdrop)":
        "Dropout on the layer's output before it is added to the residual stream (no parameters).",
    "self.causal = config.causal":
        "Causal mask on: position t may only look at positions <= t (the 'no mask' experiment turns it off).",
    "self.scale = 1.0 / math.sqrt(self.hs) if config.attn_scale else 1.0":
        "Scores are multiplied by 1/sqrt(d_k) = 1/sqrt(hs): q.k of random unit-variance vectors has variance hs, "
        "so this keeps the softmax from saturating (the √d_k section above measures it).",
    "def forward(self, x, cache=None, layer_slot: int = 0, attn: Optional[list] = None, rope=None):":
        "The forward pass. x: the normalised residual stream (B, T, C); cache/layer_slot: the KV cache used "
        "during generation; attn: a list that receives the attention weights (this page uses it); rope: the "
        "cos/sin tables when the model uses rotary positions.",
    DOCSTRING:
        "The docstring: what goes in and what comes out.",
    "B, T, C = x.size()":
        "Batch size B, sequence length T, embedding width C (768 in GPT-2).",
    "A = self.n_head * self.hs":
        "A = nh * hs: the width of all query heads side by side (= C in GPT-2).",
    "q, k, v = self.c_attn(x).split([A, self.n_kv_head * self.hs, self.n_kv_head * self.hs], dim=2)":
        "One matmul (B, T, C) @ (C, 3C) gives (B, T, 3C); split the last axis into queries, keys and values.",
    "q = q.view(B, T, self.n_head, self.hs).transpose(1, 2)":
        "Cut the C query numbers of each token into nh heads of hs, and move heads forward: (B, nh, T, hs).",
    "k = k.view(B, T, self.n_kv_head, self.hs).transpose(1, 2)":
        "The same for the keys: (B, nkv, T, hs). Each head works in its own hs-dimensional subspace.",
    "v = v.view(B, T, self.n_kv_head, self.hs).transpose(1, 2)":
        "The same for the values: (B, nkv, T, hs).",
    "if isinstance(cache, (list, tuple)):":
        "Continuous batching (many students at once): one KV cache per group of rows ...",
    "ys, r0 = [], 0":
        "... collect each group's output; r0 is the group's first row ...",
    "for c, rp in zip(cache, rope if rope is not None else [None] * len(cache)):":
        "... for every group's cache (and its own positions for RoPE) ...",
    "r1 = r0 + c.batch":
        "... the group's rows are r0 .. r1 - 1 ...",
    "ys.append(self._attend(q[r0:r1], k[r0:r1], v[r0:r1], c, layer_slot, attn, rp))":
        "... attend within the group only, so each request sees only its own keys, as if it ran alone ...",
    "r0 = r1":
        "... and move on to the next group.",
    "y = torch.cat(ys)":
        "Stack the groups back into one batch: (B, nh, T, hs).",
    "y = self._attend(q, k, v, cache, layer_slot, attn, rope)":
        "The usual case (one request, or training): attention over the whole batch at once: (B, nh, T, hs).",
    "def _attend(self, q, k, v, cache: Optional[KVCache], layer_slot: int, attn: Optional[list], rope):":
        "The attention itself, for q (B, nh, T, hs) and this step's k, v (B, nkv, T, hs).",
    "T = q.size(2)":
        "T: how many new tokens (query positions) this step has.",
    "if rope is not None:":
        "Rotary positions (RoPE models only; GPT-2 adds learned position vectors at the input instead) ...",
    "q, k = rope_rotate(q, *rope), rope_rotate(k, *rope)":
        "... turn each pair of coordinates of q and k by an angle proportional to the position.",
    "past = 0":
        "Number of earlier tokens already in the KV cache (0 for an ordinary forward pass).",
    "if cache is not None:":
        "Generation with a KV cache: the keys and values of earlier tokens are stored, not recomputed ...",
    "past = cache.pos":
        "... how many tokens the cache already holds ...",
    "cache.k[layer_slot][:, :, past:past + T] = k":
        "... store this step's keys after them ...",
    "cache.v[layer_slot][:, :, past:past + T] = v":
        "... and this step's values ...",
    "k = cache.k[layer_slot][:, :, :past + T]":
        "... then attend over all keys so far: (B, nkv, past+T, hs) ...",
    "v = cache.v[layer_slot][:, :, :past + T]":
        "... and all values so far.",
    "if self.n_kv_head != self.n_head:":
        "Grouped-query attention (fewer k/v heads than query heads; never in GPT-2) ...",
    "rep = self.n_head // self.n_kv_head":
        "... how many query heads share each k/v head ...",
    "k = k.repeat_interleave(rep, dim=1)":
        "... repeat every key head for its group: (B, nh, T, hs) ...",
    "v = v.repeat_interleave(rep, dim=1)":
        "... and every value head.",
    "mask, is_causal = None, False":
        "Start with no mask; decide below which kind this step needs.",
    "if self.causal and T > 1:":
        "A causal model with more than one new token must hide the future from each query.",
    "if past == 0:":
        "No cache: the plain lower-triangular mask ...",
    "is_causal = True":
        "... which the fused kernel can apply by itself.",
    "else:": (
        "Otherwise (a single cache or none) ...",
        "With a cache, query i sits at position past + i ...",
    ),
    "mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()":
        "... build the lower-triangular mask (True = may look) explicitly.",
    "mask = torch.ones(T, past + T, dtype=torch.bool, device=q.device).tril(diagonal=past)":
        "... so it may see keys 0 .. past + i: a (T, past+T) mask shifted by past.",
    "if attn is not None:":
        "The explicit path, used when the weights are wanted (this page, attention_maps):",
    "att = (q @ k.transpose(-2, -1)) * self.scale":
        "Scores: every query against every key, q @ k^T: (B, nh, T, hs) @ (B, nh, hs, T) -> (B, nh, T, T), "
        "times 1/sqrt(hs).",
    "if is_causal:":
        "For the plain causal case ...",
    "if mask is not None:":
        "Where the mask says 'future' ...",
    "att = att.masked_fill(~mask, float(\"-inf\"))":
        "... the score becomes -inf, so its softmax weight is exactly 0.",
    "att = F.softmax(att, dim=-1)":
        "Softmax over the keys: each query's weights are positive and sum to 1 (the heatmaps on this page).",
    "attn.append(att)":
        "Hand the weights to the caller (B, nh, T, T).",
    "return att @ v":
        "Each query's output is the weighted mean of the values: (B, nh, T, T) @ (B, nh, T, hs) -> (B, nh, T, hs).",
    "return F.scaled_dot_product_attention(":
        "Otherwise (the usual path): PyTorch's fused attention computes the same softmax(q k^T * scale, masked) "
        "@ v without storing the T x T weights ...",
    "q, k, v, attn_mask=mask, is_causal=is_causal, scale=self.scale,":
        "... with the same q, k, v, mask and 1/sqrt(hs) scale ...",
    "dropout_p=self.attn_dropout if self.training else 0.0)":
        "... and attention dropout while training only: (B, nh, T, hs).",
    "y = y.transpose(1, 2).contiguous().view(B, T, A)":
        "Put the heads side by side again: (B, nh, T, hs) -> (B, T, nh, hs) -> (B, T, A = C).",
    "return self.resid_dropout(self.c_proj(y))":
        "Mix the heads with the output projection (B, T, C), dropout while training, and return: the block adds "
        "it to the residual stream.",
}

_TRAILING_COMMENT = re.compile(r"\s+#\s.*$")


def code_key(line: str) -> str:
    """The stripped code of a source line, its trailing comment removed ('' for blank and comment-only lines)."""
    s = line.strip()
    if not s or s.startswith("#"):
        return ""
    return _TRAILING_COMMENT.sub("", s)


def _docstring_lines(src: str) -> dict:
    """{line number (1-based): True if it starts a docstring, False if it continues one} for every docstring."""
    out = {}
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                    and isinstance(first.value.value, str):
                for n in range(first.lineno, first.end_lineno + 1):
                    out[n] = n == first.lineno
    return out


def attention_source(obj=None) -> str:
    """The live source of the multi-head attention class (default `tinygpt.model.CausalSelfAttention`)."""
    if obj is None:
        from ..model import CausalSelfAttention as obj
    return textwrap.dedent(inspect.getsource(obj))


def commented_source(obj=None, comments: dict | None = None) -> list[dict]:
    """One row per source line: {lineno, code (as written), comment}. comment is None where a line of code has no
    comment (a test keeps that from happening) and '' for blank lines, comment lines and docstring continuations."""
    comments = COMMENTS if comments is None else comments
    src = attention_source(obj)
    doc = _docstring_lines(src)
    seen: dict = {}
    rows = []
    for n, line in enumerate(src.splitlines(), 1):
        if n in doc:
            key = DOCSTRING if doc[n] else ""
        else:
            key = code_key(line)
        comment = ""
        if key:
            c = comments.get(key)
            if isinstance(c, tuple):
                i = seen.get(key, 0)
                seen[key] = i + 1
                c = c[i] if i < len(c) else None
            comment = c
        rows.append({"lineno": n, "code": line, "comment": comment, "key": key})
    return rows


def unused_comments(obj=None, comments: dict | None = None) -> list[str]:
    """Comments whose line is no longer in the source (or a tuple with more comments than occurrences)."""
    comments = COMMENTS if comments is None else comments
    rows = commented_source(obj, comments)
    counts: dict = {}
    for r in rows:
        if r["key"]:
            counts[r["key"]] = counts.get(r["key"], 0) + 1
    return [k for k, c in comments.items()
            if counts.get(k, 0) == 0 or (isinstance(c, tuple) and len(c) != counts.get(k, 0))]


def attention_parameters(config) -> dict:
    """Parameters of one attention layer from the config alone: rows {name, shape, formula, count}, per_layer and
    total (x n_layer). GPT-2 small: 4C^2 + 4C = 2,362,368 per layer, 28,348,416 in its 12 layers."""
    c = getattr(config, "config", config)
    if not isinstance(c, GPTConfig):
        raise ValueError("attention_parameters needs a GPTConfig or a model with a .config.")
    C, A, kv = c.n_embd, c.attn_dim, c.kv_heads * c.head_dim
    qkv = A + 2 * kv
    gpt2_like = A == C and kv == C
    sym = "3C" if gpt2_like else "A+2kv"
    rows = [{"name": "c_attn.weight", "shape": (qkv, C), "formula": f"C·{sym}", "count": qkv * C}]
    if c.has_qkv_bias:
        rows.append({"name": "c_attn.bias", "shape": (qkv,), "formula": sym, "count": qkv})
    rows.append({"name": "c_proj.weight", "shape": (C, A), "formula": "C·C" if A == C else "A·C", "count": C * A})
    if c.bias:
        rows.append({"name": "c_proj.bias", "shape": (C,), "formula": "C", "count": C})
    per_layer = sum(r["count"] for r in rows)
    return {"rows": rows, "per_layer": per_layer, "n_layer": c.n_layer, "total": per_layer * c.n_layer,
            "formula": " + ".join(r["formula"] for r in rows), "C": C, "A": A, "kv": kv}


__all__ = ["COMMENTS", "attention_parameters", "attention_source", "code_key", "commented_source",
           "unused_comments"]
