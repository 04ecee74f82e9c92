"""Beyond pretraining: Mixture-of-Experts runs, scaling laws, DPO and RLHF."""
from .dpo import DPOConfig, Pair, dpo_loss, parse_pairs, read_pairs, sequence_logps, synthetic_pairs, train_dpo
from .rlhf import RewardModel, RLHFConfig, bradley_terry_loss, run_rlhf

__all__ = ["dpo_loss", "sequence_logps", "train_dpo", "DPOConfig", "Pair", "parse_pairs", "read_pairs",
           "synthetic_pairs", "RewardModel", "RLHFConfig", "bradley_terry_loss", "run_rlhf"]
