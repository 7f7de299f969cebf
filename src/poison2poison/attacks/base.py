"""The attack interface: the simulated threat used to evaluate defenses.

An attack returns the poisoned training set and, kept beside it, the ground-truth mask of poisoned rows.
The mask goes to metrics (and to the oracle experiment), never to a defense.
"""

from __future__ import annotations

import logging
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from ..config import AttackConfig, MethodSettings, NoSettings
from ..data.types import Example
from ..errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class PoisonedData:
    train: list[Example]
    mask: list[bool]
    asr_test: list[Example]
    """Triggered test inputs whose true label is not the target; `label` keeps the true label."""

    @property
    def poisoned_count(self) -> int:
        return sum(self.mask)


class Attack(ABC):
    name: ClassVar[str]
    row_aligned: ClassVar[bool] = False
    """Whether `poison` returns the training rows in their input order, so a poisoned row's clean original is known."""
    Settings: ClassVar[type[MethodSettings]] = NoSettings
    """The attack's own settings, given beside `name` in the config's attack section."""

    def __init__(self, config: AttackConfig, dataset: str, num_labels: int) -> None:
        if config.target >= num_labels:
            raise ConfigError(f"attack.target {config.target} is not a label of '{dataset}' (0..{num_labels - 1})")
        self.config = config
        self.settings = config.settings
        self.dataset = dataset
        self.num_labels = num_labels

    @abstractmethod
    def poison(self, train: list[Example], test: list[Example], rng: random.Random) -> PoisonedData:
        """Poison `train` and build the triggered ASR set from the non-target rows of `test`."""


class RateAttack(Attack):
    """Poisons round(rate * |train|) rows chosen at random: non-target rows relabelled to the target (dirty-label)
    or target rows left with their label (clean-label). Subclasses say how a trigger enters one text."""

    row_aligned = True

    @abstractmethod
    def apply_trigger(self, text: str, index: int, split: str, rng: random.Random) -> str:
        """The text with the trigger in it; `index` and `split` locate the row for attacks that rewrite by lookup."""

    def eligible(self, index: int, split: str) -> bool:
        """Whether row `index` of `split` can carry the trigger at all."""
        return True

    def poison(self, train: list[Example], test: list[Example], rng: random.Random) -> PoisonedData:
        cfg = self.config
        want_target = cfg.label_mode == "clean"
        candidates = [
            i for i, e in enumerate(train) if (e.label == cfg.target) == want_target and self.eligible(i, "train")
        ]
        count = round(cfg.rate * len(train))
        if count > len(candidates):
            raise ConfigError(
                f"attack '{self.name}': rate {cfg.rate} needs {count} {cfg.label_mode}-label candidates, "
                f"only {len(candidates)} exist"
            )
        chosen = set(rng.sample(candidates, count))
        poisoned = [
            Example(self.apply_trigger(e.text, i, "train", rng), cfg.target) if i in chosen else e
            for i, e in enumerate(train)
        ]
        mask = [i in chosen for i in range(len(train))]
        asr_rows = [i for i, e in enumerate(test) if e.label != cfg.target]
        usable = [i for i in asr_rows if self.eligible(i, "test")]
        if len(usable) < len(asr_rows):
            log.warning("%s: %d non-target test rows cannot carry the trigger and are left out of the ASR set",
                        self.name, len(asr_rows) - len(usable))
        asr_test = [Example(self.apply_trigger(test[i].text, i, "test", rng), test[i].label) for i in usable]
        return PoisonedData(poisoned, mask, asr_test)


def insert_at_random_position(text: str, insertion: str, rng: random.Random) -> str:
    """Insert `insertion` between two words (or at either end) of a whitespace-tokenised text."""
    words = text.split()
    position = rng.randint(0, len(words))
    return " ".join(words[:position] + [insertion] + words[position:])
