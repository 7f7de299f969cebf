"""poison2poison: fine-tune language models on possibly poisoned data, with the Poison-to-Poison defense."""

__version__ = "0.1.0"
