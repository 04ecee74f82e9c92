"""Looking inside a model: embeddings, pruning and the logit lens, attention patterns, positional encodings."""
from .embeddings import contextual_similarity, cosine_matrix, nearest_neighbours, pca_2d, vocab_norms, word_vectors
from .pruning import CONFIGS, REFERENCE_TEXTS, default_reference, logit_lens, named_layers, run_configuration

__all__ = ["contextual_similarity", "cosine_matrix", "nearest_neighbours", "pca_2d", "vocab_norms", "word_vectors",
           "CONFIGS", "REFERENCE_TEXTS", "default_reference", "logit_lens", "named_layers", "run_configuration"]
