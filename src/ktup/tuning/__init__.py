"""Hyperparameter search on Optuna (``ktup tune``): search spaces per model, resumable and
parallel studies whose trials are ordinary training runs, reports and a multi-seed confirmation.

Optuna is an optional dependency (``pip install 'ktup[tune]'``); importing this package does not
import it.
"""

from ktup.tuning.spaces import DEFAULT_SPACES, Param, default_space, load_space
from ktup.tuning.study import TuneOptions, tune

__all__ = ["TuneOptions", "tune", "DEFAULT_SPACES", "Param", "default_space", "load_space"]
