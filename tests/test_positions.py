"""Positional encodings and the sqrt(d_k) experiment: the sinusoidal table equals the paper's formula evaluated
with `math`, RoPE equals Hugging Face LLaMA's apply_rotary_pos_emb, RoPE scores depend only on m - n, the decay
bound equals a direct complex sum, and the softmax-scale numbers behave as the theory says."""
import cmath
import math

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
from transformers.models.llama.modeling_llama import rotate_half as hf_rotate_half

from tinygpt.interpret import (
    apply_rope,
    dot_by_distance,
    position_similarity,
    rope_decay_bound,
    rope_frequencies,
    rope_pair_rotation,
    rope_relative_deviation,
    rope_score_matrix,
    rotate_half,
    scale_experiment,
    sinusoidal_encoding,
    softmax_jacobian_norm,
)

# ---------------------------------------------------------------- sinusoidal


@pytest.mark.parametrize("dim", [64, 7, 1])
def test_sinusoidal_matches_paper_formula(dim):
    pe = sinusoidal_encoding(200, dim)
    assert pe.shape == (200, dim) and pe.dtype == torch.float32
    for p in (0, 1, 5, 37, 199):
        for col in range(dim):
            i = col // 2
            angle = p / 10000 ** (2 * i / dim)
            expected = math.sin(angle) if col % 2 == 0 else math.cos(angle)
            assert abs(pe[p, col].item() - expected) < 1e-6


def test_sinusoidal_self_dot_and_decay_by_distance():
    pe = sinusoidal_encoding(256, 64)
    assert torch.allclose((pe * pe).sum(dim=1), torch.full((256,), 32.0), atol=1e-4)  # sin^2 + cos^2 per pair
    by_dist = dot_by_distance(pe)
    assert by_dist.shape == (256,)
    assert abs(by_dist[0].item() - 32.0) < 1e-4
    # Exactly what is monotone for dim 64: strictly decreasing over distances 0..5 (beyond that the fastest pair,
    # cos(distance), adds ripples of period 2*pi), and the means over distances 0-9, 10-19, 20-29 decrease.
    assert all(by_dist[d + 1] < by_dist[d] for d in range(5))
    blocks = [by_dist[10 * b:10 * b + 10].mean().item() for b in range(3)]
    assert blocks[0] > blocks[1] > blocks[2]
    assert (by_dist[1:] < 32.0).all()
    # It depends only on the distance: sum_k cos(distance * w_k), w_k = 10000^(-2k/64).
    for dist in (1, 3, 17, 100):
        expected = sum(math.cos(dist / 10000 ** (2 * k / 64)) for k in range(32))
        assert abs(by_dist[dist].item() - expected) < 1e-3


def test_position_similarity():
    pe = sinusoidal_encoding(50, 16)
    cos = position_similarity(pe)
    dot = position_similarity(pe, kind="dot")
    assert torch.allclose(torch.diagonal(cos), torch.ones(50), atol=1e-6)
    assert torch.allclose(dot, pe @ pe.T)
    assert abs(cos[3, 10].item() - torch.nn.functional.cosine_similarity(pe[3], pe[10], dim=0).item()) < 1e-6


# ---------------------------------------------------------------- RoPE vs transformers


def hf_cos_sin(head_dim, base, positions):
    config = LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, head_dim=head_dim,
                         rope_parameters={"rope_type": "default", "rope_theta": base})
    rotary = LlamaRotaryEmbedding(config)
    return rotary(torch.zeros(1), positions.unsqueeze(0))  # each (1, T, head_dim)


@pytest.mark.parametrize("head_dim,base", [(8, 10000.0), (32, 10000.0), (64, 500000.0), (16, 100.0)])
def test_apply_rope_matches_transformers(head_dim, base):
    gen = torch.Generator().manual_seed(head_dim)
    positions = torch.tensor([0, 3, 4, 11, 50, 51, 200])  # not contiguous
    q = torch.randn(1, 3, 7, head_dim, generator=gen)  # (B, nh, T, hs)
    k = torch.randn(1, 3, 7, head_dim, generator=gen)
    cos, sin = hf_cos_sin(head_dim, base, positions)
    q_hf, k_hf = apply_rotary_pos_emb(q, k, cos, sin)
    assert torch.allclose(apply_rope(q, positions, base), q_hf, atol=1e-5)
    assert torch.allclose(apply_rope(k, positions, base), k_hf, atol=1e-5)
    assert torch.allclose(rope_frequencies(head_dim, base), LlamaRotaryEmbedding(
        LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, head_dim=head_dim,
                    rope_parameters={"rope_type": "default", "rope_theta": base})).inv_freq)
    x = torch.randn(5, head_dim, generator=gen)
    assert torch.equal(rotate_half(x), hf_rotate_half(x))


def test_apply_rope_keeps_shape_dtype_and_norm():
    x = torch.randn(2, 4, 6, 16, generator=torch.Generator().manual_seed(1))
    pos = list(range(10, 16))
    out = apply_rope(x, pos)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # a rotation
    assert torch.allclose(apply_rope(x, [0] * 6), x)  # position 0 is the identity
    out_bf16 = apply_rope(x.bfloat16(), pos)
    assert out_bf16.dtype == torch.bfloat16
    assert torch.allclose(out_bf16.float(), apply_rope(x.bfloat16().float(), pos), atol=2e-2, rtol=1e-2)


def test_rope_pair_rotation_matches_apply_rope():
    head_dim, base, i = 16, 10000.0, 3
    x = torch.zeros(head_dim)
    x[i], x[i + head_dim // 2] = 0.8, -0.3
    positions = torch.arange(20)
    rotated = apply_rope(x.expand(20, -1), positions, base)  # (20, head_dim)
    theta = base ** (-2 * i / head_dim)
    pair = rope_pair_rotation([0.8, -0.3], positions, theta)
    assert pair.shape == (20, 2)
    assert torch.allclose(pair[:, 0], rotated[:, i], atol=1e-5)
    assert torch.allclose(pair[:, 1], rotated[:, i + head_dim // 2], atol=1e-5)
    p = 7
    assert abs(pair[p, 0].item() - (0.8 * math.cos(p * theta) + 0.3 * math.sin(p * theta))) < 1e-6


# ---------------------------------------------------------------- relative position


@pytest.mark.parametrize("head_dim", [16, 64])
def test_rope_scores_depend_only_on_distance(head_dim):
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        # Unit vectors, so |q . k| <= 1 and 1e-5 is an absolute tolerance on a score of order 1.
        q, k = torch.randn(head_dim, generator=gen), torch.randn(head_dim, generator=gen)
        q, k = q / q.norm(), k / k.norm()
        for m, n in ((0, 0), (5, 2), (3, 9), (40, 1)):
            ref = apply_rope(q[None], [m]) @ apply_rope(k[None], [n]).T
            for shift in (1, 7, 30, 100):
                moved = apply_rope(q[None], [m + shift]) @ apply_rope(k[None], [n + shift]).T
                assert abs(moved.item() - ref.item()) < 1e-5
    q, k = torch.randn(head_dim, generator=gen), torch.randn(head_dim, generator=gen)  # |q| |k| about head_dim
    scores = rope_score_matrix(q, k, 64)
    assert scores.shape == (64, 64)
    assert abs(scores[9, 4].item() - (apply_rope(q[None], [9]) @ apply_rope(k[None], [4]).T).item()) < 1e-5
    assert rope_relative_deviation(scores) < 1e-4
    # Without RoPE, absolute encodings added to q and k break the m - n dependence.
    pe = sinusoidal_encoding(64, head_dim)
    assert rope_relative_deviation((q + pe) @ (k + pe).T) > 0.1


def test_relative_deviation_of_known_matrices():
    toeplitz = torch.tensor([[float(m - n) for n in range(5)] for m in range(5)])
    assert rope_relative_deviation(toeplitz) == 0.0
    bumped = toeplitz.clone()
    bumped[2, 1] += 0.5  # diagonal m - n = 1 has 4 entries: mean moves by 0.125, the bumped entry by 0.375
    assert abs(rope_relative_deviation(bumped) - 0.375) < 1e-6


def test_rope_decay_bound_matches_direct_sum():
    d, base = 32, 10000.0
    bound = rope_decay_bound(d, 60, base)
    assert len(bound) == 61
    theta = [base ** (-2 * k / d) for k in range(d // 2)]
    for dist in (0, 1, 10, 60):
        partial, total = 0j, 0.0
        for j in range(d // 2):
            partial += cmath.exp(1j * dist * theta[j])  # S_{j+1}
            total += abs(partial)
        assert abs(bound[dist] - total / (d // 2)) < 1e-9
    assert abs(bound[0] - (d // 2 + 1) / 2) < 1e-9
    big = rope_decay_bound(128, 250)
    assert max(big[200:]) < big[0] / 2  # decays with distance (Figure 2 of the paper)


# ---------------------------------------------------------------- softmax scale


def test_softmax_jacobian_norm_matches_autograd():
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(4, 6, generator=gen, dtype=torch.float64) * 2
    probs = torch.softmax(scores, dim=-1)
    norms = softmax_jacobian_norm(probs)
    for row in range(4):
        jac = torch.autograd.functional.jacobian(lambda s: torch.softmax(s, dim=-1), scores[row])
        assert abs(norms[row].item() - torch.linalg.matrix_norm(jac).item()) < 1e-10
    assert softmax_jacobian_norm(torch.tensor([0.0, 1.0, 0.0])).item() == 0.0


def test_scale_experiment():
    res = scale_experiment()
    assert res == scale_experiment()  # deterministic
    d_values = res["d_values"]
    assert d_values == [16, 32, 64, 128, 256, 512, 1024]
    assert abs(res["max_entropy"] - math.log(64)) < 1e-12
    un, sc = res["unscaled"], res["scaled"]
    assert all(isinstance(v, float) for v in un["score_std"] + sc["entropy"])
    i64 = d_values.index(64)
    assert abs(un["score_std"][i64] / 8.0 - 1) < 0.10
    assert all(abs(s - 1) < 0.10 for s in sc["score_std"])
    assert all(a > b for a, b in zip(un["entropy"], un["entropy"][1:]))
    assert max(sc["entropy"]) - min(sc["entropy"]) < 0.1 * res["max_entropy"]
    assert all(a < b for a, b in zip(un["max_weight"], un["max_weight"][1:]))
    assert un["jacobian_norm"][-1] < sc["jacobian_norm"][-1] / 2
    assert all(abs(r - e / res["max_entropy"]) < 1e-12 for r, e in zip(un["entropy_ratio"], un["entropy"]))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("call", [
    lambda: sinusoidal_encoding(0, 8),
    lambda: sinusoidal_encoding(8, 0),
    lambda: apply_rope(torch.zeros(4, 7), torch.arange(4)),
    lambda: apply_rope(torch.zeros(4, 8), torch.arange(3)),
    lambda: apply_rope(torch.zeros(4, 8), torch.arange(4.0)),
    lambda: apply_rope(torch.zeros(4, 8), torch.arange(4), base=0.5),
    lambda: position_similarity(sinusoidal_encoding(4, 4), kind="l2"),
    lambda: rope_score_matrix(torch.zeros(8), torch.zeros(6), 4),
    lambda: rope_relative_deviation(torch.zeros(3, 4)),
    lambda: rope_pair_rotation([1.0, 2.0, 3.0], [0, 1], 0.1),
    lambda: rope_decay_bound(9, 10),
    lambda: rope_decay_bound(8, -1),
    lambda: scale_experiment(d_values=()),
    lambda: scale_experiment(d_values=(16, 0)),
    lambda: scale_experiment(n_keys=1),
])
def test_bad_input_raises_plain_sentence(call):
    with pytest.raises(ValueError) as err:
        call()
    message = str(err.value)
    assert message[0].isupper() and message.endswith(".") and "\n" not in message
