"""STRIP (Gao et al., ACSAC 2019; for text, STRIP-ViTA, arXiv 1911.10312): inference-time detection by perturbation.

Each input is copied `strip_copies` times; in each copy a fraction `strip_swap` of its words is replaced by words of
a clean text drawn at random from the defender's clean rows. A clean input's prediction wavers under such mixing; a
triggered one stays on the target as long as the trigger survives, so its predictions have low entropy. The entropy
is averaged per input over its own copies (one published implementation averages across inputs, which mixes inputs
together). An input is rejected when its mean entropy falls below the threshold that rejects a fraction `strip_frr`
of the clean rows. The clean rows are the trusted set: `trusted_path`, or in experiments `trusted_size` clean
training rows held out of the subsample (200 by default).

A rejected input gets no answer. The metrics count it both ways: in the main view a rejected triggered input is
defended and a rejected clean input is an error; the `*_accepted` view scores the accepted inputs alone.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Sequence

import numpy as np
from pydantic import Field

from ..config import MethodSettings
from ..data.types import Example
from ..errors import ConfigError
from .base import DefenseContext, GuardContext, Guarded, InputGuard, NoDefense, PreparedTrain, Probabilities


def perturb(text: str, donor: str, swap: float, rng: random.Random) -> str:
    """`text` with round(swap * its length) words (at least one) replaced by words drawn from `donor`."""
    words, donor_words = text.split(), donor.split()
    if not words or not donor_words:
        return text
    for i in rng.sample(range(len(words)), max(1, round(swap * len(words)))):
        words[i] = rng.choice(donor_words)
    return " ".join(words)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of a probability matrix."""
    return -(probs * np.log(np.clip(probs, 1e-12, None))).sum(axis=1)


def strip_entropy(
    texts: Sequence[str], probabilities: Probabilities, donors: Sequence[str], copies: int, swap: float, seed: int,
) -> np.ndarray:
    """Per input: the mean, over its own `copies` perturbations, of the prediction's entropy. Each input's
    perturbations are drawn from (seed, input), so they do not depend on which inputs come with it or before it."""
    perturbed = []
    for text in texts:
        rng = random.Random(f"{seed}:{text}")
        perturbed += [perturb(text, rng.choice(donors), swap, rng) for _ in range(copies)]
    if not perturbed:
        return np.zeros(0)
    return entropy(probabilities(perturbed)).reshape(len(texts), copies).mean(axis=1)


class StripGuard(InputGuard):
    rejects = True

    def __init__(self, probabilities: Probabilities, donors: list[str], copies: int, swap: float, frr: float,
                 seed: int) -> None:
        self.probabilities, self.donors, self.copies, self.swap, self.seed = probabilities, donors, copies, swap, seed
        self.threshold = float(np.quantile(self.entropies(donors), frr))

    def entropies(self, texts: Sequence[str]) -> np.ndarray:
        return strip_entropy(texts, self.probabilities, self.donors, self.copies, self.swap, self.seed)

    def guard(self, texts: Sequence[str]) -> Guarded:
        flagged = self.entropies(texts) < self.threshold
        return Guarded(list(texts), [bool(f) for f in flagged])


class StripSettings(MethodSettings):
    strip_copies: int = Field(10, ge=1, description="STRIP: perturbed copies per input")
    strip_swap: float = Field(0.5, gt=0.0, le=1.0, description="STRIP: fraction of an input's words replaced per copy")
    strip_frr: float = Field(0.05, gt=0.0, lt=1.0, description="STRIP: the false-rejection rate on clean rows")
    section_defaults: ClassVar[dict[str, Any]] = {"trusted_size": 200}
    """STRIP calibrates on clean rows; in experiments, 200 held-out clean training rows stand in for them."""


class Strip(NoDefense):
    """Plain fine-tuning; inputs whose predictions resist perturbation are rejected."""

    name = "strip"
    needs_clean = True
    Settings = StripSettings
    settings: StripSettings

    def prepare(self, train: list[Example], rng: random.Random, context: DefenseContext) -> PreparedTrain:
        prepared = super().prepare(train, rng, context)
        prepared.details.update(self.settings.model_dump())
        return prepared

    def input_guard(self, context: GuardContext) -> InputGuard:
        donors = [e.text for e in context.clean if e.text.split()]
        if len(donors) < 2:
            raise ConfigError("STRIP needs clean rows to calibrate on: set defense.trusted_path or defense.trusted_size")
        cfg, seed = self.settings, context.rng.getrandbits(63)
        return StripGuard(context.probabilities, donors, cfg.strip_copies, cfg.strip_swap, cfg.strip_frr, seed)
