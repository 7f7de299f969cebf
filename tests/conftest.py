"""Test set-up: no network, real data from ../shared/data, tiny models only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("P2P_DATA_DIR", str(SHARED_DATA))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ["P2P_DATA_DIR"])
    assert path.is_dir(), f"P2P_DATA_DIR={path} does not exist; tests read the real data from ../shared/data"
    return path
