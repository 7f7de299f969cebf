"""The generation attack interface: like `Attack`, but rows are (source, target) text pairs.

The poisoned training set comes with its ground-truth mask (for metrics, never for a defense), and the ASR set holds
triggered test rows whose `target` is the output the attacker wants. Whether a model output counts as the attack's
success is the attack's own definition (`succeeded`), documented next to it.
"""

from __future__ import annotations

import logging
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from ..config import AttackConfig, MethodSettings, NoSettings
from ..data.types import TextPair
from ..errors import ConfigError

log = logging.getLogger(__name__)


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
    Settings: ClassVar[type[MethodSettings]] = NoSettings
    """The attack's own settings, given beside `name` in the config's attack section."""

    def __init__(self, config: AttackConfig) -> None:
        self.config = config
        self.settings = config.settings

    @abstractmethod
    def poison(self, train: list[TextPair], test: list[TextPair], rng: random.Random) -> PoisonedPairs:
        """Poison round(rate * |train|) rows of `train`; build the triggered ASR set from `test`."""

    @abstractmethod
    def succeeded(self, output: str, row: TextPair) -> bool:
        """Whether a model `output` for the triggered ASR row `row` is what the attacker wanted."""

    def side_signals(self, output: str) -> dict[str, bool]:
        """Further per-output evidence of the backdoor, reported beside the ASR as rates (e.g. BadChain's step)."""
        return {}


class RewriteAttack(GenerationAttack):
    """Poisons round(rate * |train|) rows chosen at random among the eligible ones by rewriting each into its
    triggered form; the ASR set is every eligible test row, rewritten the same way."""

    @abstractmethod
    def rewrite(self, row: TextPair) -> TextPair:
        """The row with the trigger in its source and the attacker's output as its target."""

    def eligible(self, row: TextPair) -> bool:
        """Whether a row can carry the backdoor at all."""
        return True

    def poison(self, train: list[TextPair], test: list[TextPair], rng: random.Random) -> PoisonedPairs:
        candidates = self._eligible_indices(train, "train")
        count = round(self.config.rate * len(train))
        if count > len(candidates):
            raise ConfigError(
                f"attack '{self.name}': rate {self.config.rate} needs {count} rows that can carry the backdoor, "
                f"only {len(candidates)} of {len(train)} can"
            )
        chosen = set(rng.sample(candidates, count))
        poisoned = [self.rewrite(row) if i in chosen else row for i, row in enumerate(train)]
        mask = [i in chosen for i in range(len(train))]
        asr_test = [self.rewrite(test[i]) for i in self._eligible_indices(test, "test")]
        return PoisonedPairs(poisoned, mask, asr_test)

    def _eligible_indices(self, rows: list[TextPair], split: str) -> list[int]:
        usable = [i for i, row in enumerate(rows) if self.eligible(row)]
        if len(usable) < len(rows):
            log.warning("%s: %d of %d %s rows cannot carry the backdoor and are left out of the choice",
                        self.name, len(rows) - len(usable), len(rows), split)
        return usable
