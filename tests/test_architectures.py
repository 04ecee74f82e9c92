"""Architecture options beyond GPT-2, each checked against an independent reference: a LLaMA-style model
(RoPE, RMSNorm, gated SiLU MLP, GQA, decoupled head size, no biases, untied head) equals transformers'
LlamaForCausalLM given the same weights; the KV cache matches recomputation for every position encoding;
checkpoints round-trip every option; and the Mixture-of-Experts layer routes, weights and balances as the
Switch Transformer paper defines."""
import pytest
import torch
import torch.nn.functional as F

from tinygpt import GPT, GPTConfig, generate, load_model, save_checkpoint
from tinygpt.positions import sinusoidal_encoding


def llama_pair(tie=False):
    """Our GPT with LLaMA's options and transformers' LlamaForCausalLM with the same weights copied in."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=300, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, head_size=12,
                    n_inner=40, bias=False, tie_weights=tie, mlp="gated", norm="rmsnorm", pos_encoding="rope",
                    layer_norm_epsilon=1e-6, rope_base=500.0)
    ours = GPT(cfg).eval()
    hf = LlamaForCausalLM(LlamaConfig(
        vocab_size=300, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=12, max_position_embeddings=64, rms_norm_eps=1e-6,
        tie_word_embeddings=tie, rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        attn_implementation="eager")).eval()
    A, kv = 4 * 12, 2 * 12
    with torch.no_grad():
        hf.model.embed_tokens.weight.copy_(ours.transformer.wte.weight)
        for blk, layer in zip(ours.transformer.h, hf.model.layers):
            q, k, v = blk.attn.c_attn.weight.split([A, kv, kv], dim=0)
            layer.self_attn.q_proj.weight.copy_(q)
            layer.self_attn.k_proj.weight.copy_(k)
            layer.self_attn.v_proj.weight.copy_(v)
            layer.self_attn.o_proj.weight.copy_(blk.attn.c_proj.weight)
            layer.mlp.gate_proj.weight.copy_(blk.mlp.c_gate.weight)
            layer.mlp.up_proj.weight.copy_(blk.mlp.c_fc.weight)
            layer.mlp.down_proj.weight.copy_(blk.mlp.c_proj.weight)
            layer.input_layernorm.weight.copy_(torch.rand(32) + 0.5)
            blk.ln_1.weight.copy_(layer.input_layernorm.weight)
            layer.post_attention_layernorm.weight.copy_(torch.rand(32) + 0.5)
            blk.ln_2.weight.copy_(layer.post_attention_layernorm.weight)
        hf.model.norm.weight.copy_(ours.transformer.ln_f.weight)
        if not tie:
            hf.lm_head.weight.copy_(ours.lm_head.weight)
    return ours, hf


def test_llama_options_equal_transformers_llama():
    ours, hf = llama_pair()
    x = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(x).logits
        got, _ = ours(x)
    assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()
    # sum(p.numel()) agrees too (transformers' tied/untied head counted the same way)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope", "none"])
def test_kv_cache_matches_recompute_for_every_position_encoding(pos):
    torch.manual_seed(0)
    m = GPT(GPTConfig.from_preset("tiny", block_size=16, pos_encoding=pos, n_kv_head=2)).eval()
    x = torch.randint(0, 50257, (2, 5))
    for kw in (dict(temperature=0.0), dict(temperature=1.0, top_k=50)):
        a = generate(m, x, 25, generator=torch.Generator().manual_seed(3), use_cache=True, **kw)
        b = generate(m, x, 25, generator=torch.Generator().manual_seed(3), use_cache=False, **kw)
        assert a.tolist() == b.tolist()


def test_position_encodings_do_what_they_say():
    torch.manual_seed(0)
    x = torch.randint(0, 50257, (1, 10))
    for pos in ("learned", "sinusoidal", "rope", "none"):
        m = GPT(GPTConfig.from_preset("tiny", pos_encoding=pos)).eval()
        assert ("wpe" in m.transformer) == (pos == "learned")
        assert not any("wpe" in k for k in m.state_dict()) or pos == "learned"
        with torch.no_grad():
            emb = m.hidden_states(x)[0]
            expected = m.transformer.wte(x)
            if pos == "learned":
                expected = expected + m.transformer.wpe(torch.arange(10))
            elif pos == "sinusoidal":
                expected = expected + sinusoidal_encoding(10, 32)
        assert torch.allclose(emb, expected, atol=1e-6)
    # without any positional information and with the causal mask off, the model is blind to word order:
    m = GPT(GPTConfig.from_preset("tiny", pos_encoding="none", causal=False)).eval()
    perm = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        a, _ = m(perm)
        b, _ = m(perm.flip(1))
    assert torch.allclose(a[0], b[0].flip(0), atol=1e-5)


@pytest.mark.parametrize("options", [dict(pos_encoding="sinusoidal"), dict(pos_encoding="rope", n_kv_head=1),
                                     dict(pos_encoding="none", mlp="gated", norm="rmsnorm", bias=False),
                                     dict(head_size=4, qkv_bias=True, bias=False, tie_weights=False),
                                     dict(n_experts=4, moe_top_k=1), dict(n_experts=3, moe_top_k=2)])
def test_checkpoints_roundtrip_every_option(options, tmp_path, tok):
    torch.manual_seed(0)
    m = GPT(GPTConfig.from_preset("tiny", **options)).eval()
    save_checkpoint(m, tok, str(tmp_path))
    m2, _ = load_model(str(tmp_path), fast_path=False)  # the checkpoint, not the kernel: bit-exact
    for k, v in options.items():
        assert getattr(m2.config, k) == v
    x = torch.randint(0, 50257, (1, 9))
    with torch.no_grad():
        assert torch.equal(m(x)[0], m2(x)[0])
    out = generate(m2, x, 5, temperature=0.8, top_k=20, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 14)


def test_moe_routing_gates_and_load_balancing_loss():
    torch.manual_seed(0)
    cfg = GPTConfig.from_preset("tiny", n_layer=1, n_experts=4, moe_top_k=1, moe_aux_weight=0.5)
    m = GPT(cfg).eval()
    x = torch.randint(0, 50257, (2, 12))
    moe = m.transformer.h[0].mlp
    with torch.no_grad():
        h = m.transformer.h[0].ln_2(m.hidden_states(x)[0] + m.transformer.h[0].attn(m.transformer.h[0].ln_1(
            m.hidden_states(x)[0])))  # the MoE layer's input, (B, T, C)
        flat = h.reshape(-1, 32)
        probs = F.softmax(moe.router(flat), -1)  # (N, 4)
        routing = m.moe_routing(x)[0]
        # top-1 picks the arg-max expert; its output is gate probability x that expert's MLP
        assert routing["choice"].reshape(-1).tolist() == probs.argmax(-1).tolist()
        out = moe(h)
        ref = torch.stack([probs[i].max() * moe.experts[int(probs[i].argmax())](flat[i]) for i in range(len(flat))])
        assert torch.allclose(out.reshape(-1, 32), ref, atol=1e-5)
    # accounting: every token goes to exactly one expert (dropless)
    assert int(routing["counts"].sum()) == 24
    assert routing["counts"].tolist() == torch.bincount(probs.argmax(-1), minlength=4).tolist()
    # Switch Transformer aux loss: E * sum_e f_e * P_e
    f = routing["counts"].float() / 24
    assert float(routing["aux"]) == pytest.approx(float(4 * (f * probs.mean(0)).sum()), rel=1e-5)
    # the training loss adds weight * aux
    y = torch.randint(0, 50257, (2, 12))
    with torch.no_grad():
        logits, loss = m(x, y)
    ce = F.cross_entropy(logits.reshape(-1, 50257), y.reshape(-1))
    assert float(loss) == pytest.approx(float(ce + 0.5 * routing["aux"]), rel=1e-5)


def test_moe_top2_renormalises_and_trains():
    torch.manual_seed(0)
    m = GPT(GPTConfig.from_preset("tiny", n_layer=1, n_experts=4, moe_top_k=2))
    x = torch.randint(0, 50257, (2, 8))
    r = m.moe_routing(x)[0]
    assert int(r["counts"].sum()) == 2 * 16  # two experts per token
    _, loss = m(x, x)
    loss.backward()
    assert m.transformer.h[0].mlp.router.weight.grad.abs().sum() > 0  # the router learns (through gates and aux)


def test_bad_architecture_options():
    for kw, msg in ((dict(pos_encoding="alibi"), "pos_encoding"), (dict(mlp="relu"), "mlp"),
                    (dict(norm="batchnorm"), "norm"), (dict(n_experts=1), "n_experts"),
                    (dict(n_experts=4, moe_top_k=5), "moe_top_k"), (dict(head_size=0), "head_size"),
                    (dict(pos_encoding="rope", head_size=3), "even")):
        with pytest.raises(ValueError, match=msg):
            GPTConfig.from_preset("tiny", **kw)
    with pytest.raises(ValueError, match="no Mixture-of-Experts"):
        GPT(GPTConfig.from_preset("tiny")).moe_routing(torch.zeros(1, 2, dtype=torch.long))
