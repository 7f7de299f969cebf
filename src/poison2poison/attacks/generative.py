"""The generation attack interface: like `Attack`, but rows are (source, target) text pairs.

The poisoned training set comes with its ground-truth mask (for metrics, never for a defense), and the ASR set holds
triggered test rows whose `target` is the output the attacker wants. Whether a model output counts as the attack's
success is the attack's own definition (`succeeded`), documented next to it.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from ..config import AttackConfig
from ..data.types import TextPair


@dataclass
class PoisonedPairs:
    train: list[TextPair]
    mask: list[bool]
    asr_test: list[TextPair]
    """Triggered test inputs; `target` is the output the attacker wants."""

    @property
    def poisoned_count(self) -> int:
        return sum(self.mask)


class GenerationAttack(ABC):
    name: ClassVar[str]
    dataset: ClassVar[str | None] = None
    """The one dataset an attack is bound to (its poisoned rows come from a file), else None."""

    def __init__(self, config: AttackConfig) -> None:
        self.config = config

    @abstractmethod
    def poison(self, train: list[TextPair], test: list[TextPair], rng: random.Random) -> PoisonedPairs:
        """Poison round(rate * |train|) rows of `train`; build the triggered ASR set from `test`."""

    @abstractmethod
    def succeeded(self, output: str, row: TextPair) -> bool:
        """Whether a model `output` for the triggered ASR row `row` is what the attacker wanted."""
