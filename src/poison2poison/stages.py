"""The steps a task supplies to the stages every run goes through (`pipeline.run_stages`): read and check the data
(nothing is written yet), claim the run folder (or return the finished run it holds), defend, train, write the
manifest, evaluate, record.

Classification supplies `pipeline.ClassificationSteps`, generation `generation_pipeline.GenerationSteps`; the order,
the claim, the resume, the timings and the records are kept once, in `run_stages`, so that a fix to one path cannot
miss the other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from .attacks import PoisonedData, PoisonedPairs
from .config import ExperimentConfig
from .data.types import Example, TextPair
from .models import LoadedModel


class TaskData(Protocol):
    """What every task's data has: the poisoned training rows (with the mask) and the clean test rows."""

    @property
    def poisoned(self) -> PoisonedData | PoisonedPairs: ...

    @property
    def test(self) -> list[Example] | list[TextPair]: ...


@dataclass
class Ready:
    """What evaluation needs once the model is trained (a task adds its own: an input guard, a generation budget),
    and the manifest that lets the model be used."""

    manifest: dict[str, Any]


D = TypeVar("D", bound=TaskData)
P = TypeVar("P")
"""What the defense made of the training rows (`pipeline.Defended` or `PreparedPairs`)."""
R = TypeVar("R", bound=Ready)


@dataclass
class Checked(Generic[D]):
    """The data, read and checked: what the run is (`identity`, its data's hashes) and what the checks warned of."""

    data: D
    identity: dict[str, str]
    warnings: list[str] = field(default_factory=list)


class TaskSteps(ABC, Generic[D, P, R]):
    unit: ClassVar[str]
    """What a training row is called in the log ('rows', 'pairs')."""

    @abstractmethod
    def load(self, config: ExperimentConfig) -> Checked[D]:
        """Read, poison, subsample and check the data; write nothing."""

    @abstractmethod
    def defend(self, config: ExperimentConfig, run_dir: Path, data: D, clean_rows: list[int]) -> P:
        """The run's one defense (its secret pinned), applied to the training rows; `clean_rows`, the rows the attack
        left alone, serve only the oracle experiment (`defense.source: oracle`)."""

    @abstractmethod
    def records(self, prepared: P) -> list[list[object]]:
        """The defended training samples as data, to hash; never the trigger, not even hashed."""

    @abstractmethod
    def train(self, config: ExperimentConfig, run_dir: Path, data: D, prepared: P) -> tuple[LoadedModel, dict[str, Any]]:
        """Fine-tune and save, or load the model an earlier attempt saved from the same samples."""

    @abstractmethod
    def ready(self, config: ExperimentConfig, data: D, prepared: P, model: LoadedModel) -> R:
        """What evaluation needs beyond the model (an input guard, a generation budget) and the manifest."""

    @abstractmethod
    def evaluate(
        self, config: ExperimentConfig, data: D, prepared: P, model: LoadedModel, ready: R
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The metrics and the prediction rows."""

    @abstractmethod
    def accounting(self, data: D, prepared: P, ready: R, checked: Checked[D]) -> dict[str, Any]:
        """What the defense did, scored against the ground truth after the fact."""

    @abstractmethod
    def summary(self, metrics: dict[str, Any]) -> str:
        """The run's result on one log line."""
