"""poison2poison: fine-tune language models on possibly poisoned data, with the Poison-to-Poison defense."""

from __future__ import annotations

from ._version import __version__
from .api import DefendedGenerator, DefendedModel, defend
from .config import ExperimentConfig, load_config
from .pipeline import run_experiment

__all__ = ["DefendedGenerator", "DefendedModel", "ExperimentConfig", "__version__", "defend", "load_config", "run_experiment"]
