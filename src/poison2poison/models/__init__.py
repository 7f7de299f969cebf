"""Models: one loader for causal LMs, encoder classifiers and the from-scratch `tiny` model."""

from .loading import (
    LoadedModel,
    build_model,
    load_saved_model,
    resolve_model_source,
    save_model,
)

__all__ = ["LoadedModel", "build_model", "load_saved_model", "resolve_model_source", "save_model"]
