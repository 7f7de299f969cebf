"""The defense interface. Every defense, `none` included, turns the (possibly poisoned) training set into the
samples the model is trained on, and says how every later query must be presented and read back."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ..config import DefenseConfig, MethodSettings, NoSettings
from ..data.types import Example
from ..prompting import Sample
from ..specs import InferenceSpec, TrainLoss, plain_spec
from ..tasks import ClassificationTask

Probabilities = Callable[[Sequence[str]], np.ndarray]
"""texts -> (N, num_labels) label probabilities from a trained model, read through its inference spec."""
Perplexity = Callable[[Sequence[str]], np.ndarray]
"""texts -> (N,) perplexity under a language model."""


@dataclass(frozen=True)
class Reference:
    """A model trained on the untrusted rows as given, seen through two views."""

    probabilities: Probabilities
    embeddings: Callable[[Sequence[str]], np.ndarray]
    """texts -> (N, hidden): the last layer where the answer is read."""


@dataclass
class DefenseContext:
    """What a defense may be given besides the training set. Never the poison mask."""

    trusted: list[Example] | None = None
    oracle_pool: list[int] | None = None
    """Row indices known to be clean; set only for the oracle experiment, which reproduces the official code."""
    suspicion: list[float] | None = None
    """Per training row, from screening (higher = more likely poisoned); set when the defense asks for it."""
    filtered: tuple[list[int], dict[str, Any]] | None = None
    """Rows a filter left out in an earlier attempt of this run, and what it found: reused on resume."""
    reference: "Reference | None" = None
    """A model fine-tuned on the rows as given; set for defenses that filter the data with one
    (`Defense.needs_reference`)."""


@dataclass
class DefenseTimings:
    """Seconds a defense took before training, kept apart from what it found: metrics.json adds them up (with the
    guard's time) and the manifest records them beside the defense's details."""

    defense: float = 0.0
    """The defense's own work, a reference fine-tune included."""
    screening: dict[str, float] = field(default_factory=dict)
    """Per screening signal, as computed (a cached result keeps the seconds of its computation)."""

    def as_details(self) -> dict[str, Any]:
        """The manifest's timing fields: `defense_seconds`, and `screen_seconds` when the defense screened."""
        record: dict[str, Any] = {"defense_seconds": self.defense}
        if self.screening:
            record["screen_seconds"] = self.screening
        return record


@dataclass
class PreparedTrain:
    samples: list[Sample]
    spec: InferenceSpec
    details: dict[str, Any] = field(default_factory=dict)
    """What this defense found and chose (its own fields), recorded in the manifest."""
    timings: DefenseTimings = field(default_factory=DefenseTimings)
    benign_rows: list[int] = field(default_factory=list)
    """Training rows shown in a benign context (indices into the untrusted set), for the run's own accounting."""
    dropped_rows: list[int] = field(default_factory=list)
    """Training rows the defense left out."""
    dropped_because: dict[int, str] = field(default_factory=dict)
    """Why a dropped row went, where the defense can name it (the confirmed trigger it carries); keyed by row."""
    filters: bool = False
    """The defense looks for poisoned rows to leave out (even if it found none): it is scored as a detector."""
    loss: TrainLoss | None = None
    """A training loss in place of cross-entropy: (logits (N, K), labels (N,), epoch from 1) -> scalar tensor."""


@dataclass
class Guarded:
    """Inputs after an inference-time defense: what the model is asked, and which inputs it refuses to answer."""

    texts: list[str]
    rejected: list[bool]


class InputGuard(ABC):
    """An inference-time defense: it may rewrite inputs (ONION) or reject them (STRIP) before the model answers."""

    rejects: ClassVar[bool] = False
    """A detector: its rejections get their own metrics (the accepted-only view, precision and recall)."""

    @abstractmethod
    def guard(self, texts: Sequence[str]) -> Guarded: ...


@dataclass
class GuardContext:
    """What an inference-time defense is built from, after the model is trained."""

    probabilities: Probabilities
    clean: list[Example]
    """Rows the defender vouches for (the trusted set); STRIP calibrates on them."""
    rng: random.Random
    perplexity: Perplexity | None = None
    """Set for defenses that score fluency (`Defense.needs_language_model`)."""


class Defense(ABC):
    name: ClassVar[str]
    needs_reference: ClassVar[bool] = False
    """Asks for `DefenseContext.reference`: a model fine-tuned on the untrusted rows before the real one."""
    needs_language_model: ClassVar[bool] = False
    """Asks for `GuardContext.perplexity`."""
    needs_clean: ClassVar[bool] = False
    """Needs rows the defender vouches for (`defense.trusted_path`, or `trusted_size` in experiments)."""
    Settings: ClassVar[type[MethodSettings]] = NoSettings
    """The defense's own settings, given beside `name` in the config's defense section."""

    def __init__(self, config: DefenseConfig, task: ClassificationTask) -> None:
        self.config = config
        self.settings = config.settings
        self.task = task

    @abstractmethod
    def prepare(self, train: list[Example], rng: random.Random, context: DefenseContext) -> PreparedTrain:
        """The training samples and the inference spec for this defense."""

    def input_guard(self, context: GuardContext) -> InputGuard | None:
        """The inference-time part of the defense, if it has one."""
        return None

    @classmethod
    def guards_inputs(cls) -> bool:
        """Whether the defense acts at inference (known from its class, before anything is built)."""
        return cls.input_guard is not Defense.input_guard


class NoDefense(Defense):
    """Plain fine-tuning; the baseline every table compares against."""

    name = "none"

    def prepare(self, train: list[Example], rng: random.Random, context: DefenseContext) -> PreparedTrain:
        return PreparedTrain([Sample(e.text, e.label) for e in train], plain_spec(self.name, self.task.num_labels))

