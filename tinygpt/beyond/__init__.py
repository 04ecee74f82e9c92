"""Beyond pretraining: scaling laws and Chinchilla-style sweeps, DPO and a toy RLHF pipeline, trained live."""
from .dpo import DPOConfig, Pair, dpo_loss, parse_pairs, read_pairs, sequence_logps, synthetic_pairs, train_dpo
from .rlhf import RewardModel, RLHFConfig, bradley_terry_loss, run_rlhf
from .scaling import SweepConfig, analyse_sweep, fit_loglinear, fit_power_law, plan_sweep, scaling_sweep

__all__ = ["SweepConfig", "analyse_sweep", "fit_loglinear", "fit_power_law", "plan_sweep", "scaling_sweep",
           "dpo_loss", "sequence_logps", "train_dpo", "DPOConfig", "Pair", "parse_pairs", "read_pairs",
           "synthetic_pairs", "RewardModel", "RLHFConfig", "bradley_terry_loss", "run_rlhf"]
