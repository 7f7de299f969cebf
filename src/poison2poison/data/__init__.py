"""Datasets: readers for the public formats and a catalog of named datasets."""

from .catalog import CATALOG, DATA_DIR_ENV, dataset_spec, load_split, read_user_data
from .types import Example

__all__ = ["CATALOG", "DATA_DIR_ENV", "Example", "dataset_spec", "load_split", "read_user_data"]
