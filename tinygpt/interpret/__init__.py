"""Looking inside a model: embeddings, pruning and the logit lens, attention patterns, positional encodings."""
from .positions import (
    apply_rope,
    dot_by_distance,
    position_similarity,
    rope_decay_bound,
    rope_frequencies,
    rope_pair_rotation,
    rope_relative_deviation,
    rope_score_matrix,
    rotate_half,
    sinusoidal_encoding,
)
from .softmax_scale import scale_experiment, softmax_jacobian_norm

__all__ = [
    "apply_rope", "dot_by_distance", "position_similarity", "rope_decay_bound", "rope_frequencies",
    "rope_pair_rotation", "rope_relative_deviation", "rope_score_matrix", "rotate_half", "scale_experiment",
    "sinusoidal_encoding", "softmax_jacobian_norm",
]
