"""Beyond pretraining: scaling laws and Chinchilla-style compute-optimal sweeps, trained live at toy scale."""
from .scaling import SweepConfig, analyse_sweep, fit_loglinear, fit_power_law, plan_sweep, scaling_sweep

__all__ = ["SweepConfig", "analyse_sweep", "fit_loglinear", "fit_power_law", "plan_sweep", "scaling_sweep"]
