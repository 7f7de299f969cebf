"""poison2poison: fine-tune language models on possibly poisoned data, with the Poison-to-Poison defense."""

from __future__ import annotations

__version__ = "0.1.0"

from .api import DefendedGenerator, DefendedModel, defend  # noqa: E402
from .config import ExperimentConfig, load_config  # noqa: E402
from .pipeline import run_experiment  # noqa: E402

__all__ = ["DefendedGenerator", "DefendedModel", "ExperimentConfig", "__version__", "defend", "load_config", "run_experiment"]
