"""Looking inside a model: embeddings, pruning and the logit lens, attention patterns, positional encodings, and
the 1/sqrt(d_k) experiment."""
from .attention import (
                        attention_maps,
                        head_patterns,
                        pattern_scores,
                        query_key,
                        scale_removed,
                        softmax_weights,
)
from .attention_code import attention_parameters, commented_source
from .embeddings import contextual_similarity, cosine_matrix, nearest_neighbours, pca_2d, vocab_norms, word_vectors
from .graph import graph_svg, model_graph
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
from .pruning import CONFIGS, REFERENCE_TEXTS, default_reference, logit_lens, named_layers, run_configuration
from .softmax_scale import scale_experiment, softmax_jacobian_norm

__all__ = ["contextual_similarity", "cosine_matrix", "nearest_neighbours", "pca_2d", "vocab_norms", "word_vectors",
           "CONFIGS", "REFERENCE_TEXTS", "default_reference", "logit_lens", "named_layers", "run_configuration",
           "apply_rope", "dot_by_distance", "position_similarity", "rope_decay_bound", "rope_frequencies",
           "rope_pair_rotation", "rope_relative_deviation", "rope_score_matrix", "rotate_half", "scale_experiment",
           "sinusoidal_encoding", "softmax_jacobian_norm",
           "attention_maps", "head_patterns", "pattern_scores", "query_key", "scale_removed", "softmax_weights",
           "attention_parameters", "commented_source", "model_graph", "graph_svg"]
