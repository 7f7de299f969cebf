"""Per-stage random generators: each stage draws from its own stream, so changing one stage never shifts another."""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from typing import Hashable, Sequence


def stage_rng(seed: int, stage: str) -> random.Random:
    """A generator for `stage` that depends only on the run seed and the stage's name."""
    digest = hashlib.sha256(f"{seed}:{stage}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def stratified_sample(keys: Sequence[Hashable], size: int | None, rng: random.Random) -> list[int]:
    """Sorted indices of about `size` rows keeping each key's share (largest-remainder rounding, exact total)."""
    if size is None or size >= len(keys):
        return list(range(len(keys)))
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    order = sorted(groups, key=repr)
    exact = {k: size * len(groups[k]) / len(keys) for k in order}
    counts = {k: int(exact[k]) for k in order}
    for k in sorted(order, key=lambda k: (counts[k] - exact[k], repr(k)))[: size - sum(counts.values())]:
        counts[k] += 1
    return sorted(i for k in order for i in rng.sample(groups[k], counts[k]))
