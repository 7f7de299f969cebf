"""Per-stage random generators: each stage draws from its own stream, so changing one stage never shifts another."""

from __future__ import annotations

import hashlib
import random


def stage_rng(seed: int, stage: str) -> random.Random:
    """A generator for `stage` that depends only on the run seed and the stage's name."""
    digest = hashlib.sha256(f"{seed}:{stage}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))
