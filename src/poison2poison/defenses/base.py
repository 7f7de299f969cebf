"""The defense interface. Every defense, `none` included, turns the (possibly poisoned) training set into the
samples the model is trained on, and says how every later query must be presented and read back."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar

from ..config import DefenseConfig
from ..data.types import Example
from ..prompting import PLAIN_CUE, Sample
from ..tasks import ClassificationTask

TrainLoss = Callable[..., Any]


@dataclass(frozen=True)
class InferenceSpec:
    """How a query is shown to the trained model and how its output is mapped back to a label.

    Saved in the run's manifest (p2p.json) so that every predict path applies it: a P2P model queried without
    its trigger still fires the attacker's backdoor.
    """

    defense: str
    trigger: str
    cue: str
    label_of_output: tuple[int, ...]
    """label_of_output[j] is the original label that model output j stands for (P2P: j mod n)."""

    @property
    def num_outputs(self) -> int:
        return len(self.label_of_output)

    def present(self, text: str) -> Sample:
        return Sample(text=text, label=-1, trigger=self.trigger, cue=self.cue)

    def project(self, output: int) -> int:
        return self.label_of_output[output]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["label_of_output"] = list(self.label_of_output)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "InferenceSpec":
        return cls(data["defense"], data["trigger"], data["cue"], tuple(int(j) for j in data["label_of_output"]))


@dataclass
class DefenseContext:
    """What a defense may be given besides the training set. Never the poison mask."""

    trusted: list[Example] | None = None
    oracle_pool: list[int] | None = None
    """Row indices known to be clean; set only for the oracle experiment, which reproduces the official code."""
    suspicion: list[float] | None = None
    """Per training row, from screening (higher = more likely poisoned); set when the defense asks for it."""


@dataclass
class PreparedTrain:
    samples: list[Sample]
    spec: InferenceSpec
    details: dict[str, Any] = field(default_factory=dict)
    benign_rows: list[int] = field(default_factory=list)
    """Training rows shown in a benign context (indices into the untrusted set), for the run's own accounting."""
    dropped_rows: list[int] = field(default_factory=list)
    """Training rows the defense left out."""
    loss: TrainLoss | None = None
    """A training loss in place of cross-entropy: (logits (N, K), labels (N,), epoch from 1) -> scalar tensor."""


class Defense(ABC):
    name: ClassVar[str]

    def __init__(self, config: DefenseConfig, task: ClassificationTask) -> None:
        self.config = config
        self.task = task

    @abstractmethod
    def prepare(self, train: list[Example], rng: random.Random, context: DefenseContext) -> PreparedTrain:
        """The training samples and the inference spec for this defense."""


class NoDefense(Defense):
    """Plain fine-tuning; the baseline every table compares against."""

    name = "none"

    def prepare(self, train: list[Example], rng: random.Random, context: DefenseContext) -> PreparedTrain:
        spec = InferenceSpec(self.name, "", PLAIN_CUE, tuple(range(self.task.num_labels)))
        return PreparedTrain([Sample(e.text, e.label) for e in train], spec)
