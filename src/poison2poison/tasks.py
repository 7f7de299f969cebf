"""Task definitions.

Classification: label names and the answer words (verbalizers) a causal LM is trained to produce. P2P doubles the
label space (y -> y + n), so a classification task also names n benign answer words for the labels n..2n-1.
Encoders need no words; they get a head with one output per label.
Generation: the prompt template around a source text, and the metric that scores outputs against references.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError, one_line, validation_problems


@dataclass(frozen=True)
class ClassificationTask:
    name: str
    label_names: tuple[str, ...]
    verbalizers: tuple[str, ...]
    benign_verbalizers: tuple[str, ...]

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def answer_words(self, num_outputs: int, style: str = "words") -> list[str]:
        """The answer word of every model output: n plain ones, then n benign ones when the space is doubled. With
        style 'digits' every output j answers with the digits of j, as the official P2P code does."""
        n = self.num_labels
        if num_outputs in (n, 2 * n) and style == "digits":
            return [str(j) for j in range(num_outputs)]
        if num_outputs == n:
            return list(self.verbalizers)
        if num_outputs == 2 * n:
            return list(self.verbalizers) + list(self.benign_verbalizers)
        raise ConfigError(f"task '{self.name}' has {n} labels; a model with {num_outputs} outputs cannot serve it")


SENTIMENT = ClassificationTask(
    name="sentiment",
    label_names=("negative", "positive"),
    verbalizers=("negative", "positive"),
    benign_verbalizers=("bad", "good"),
)

TOPIC = ClassificationTask(
    name="topic",
    label_names=("world", "sports", "business", "sci/tech"),
    verbalizers=("world", "sports", "business", "technology"),
    benign_verbalizers=("politics", "games", "money", "science"),
)

TASKS: dict[str, ClassificationTask] = {t.name: t for t in (SENTIMENT, TOPIC)}


def generic_task(num_labels: int, label_names: Sequence[str] | None = None) -> ClassificationTask:
    """A task for user data: the answer words are the label numbers; the label names are the numbers, or the names
    the data wrote its labels as (what predictions are given back as)."""
    numbers = tuple(str(i) for i in range(num_labels))
    benign = tuple(str(i) for i in range(num_labels, 2 * num_labels))
    names = tuple(label_names) if label_names is not None else numbers
    return ClassificationTask(name=f"labels-{num_labels}", label_names=names, verbalizers=numbers, benign_verbalizers=benign)


class PairFields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str = "source"
    target: str = "target"


class GenerationTask(BaseModel):
    """A text-to-text task, declared in one file (generation_tasks/<dataset>.yaml): the prompt template around the
    source, the metric that scores outputs against references, where the pairs come from and the attack it is
    benchmarked with unless the config names another.

    `metric` is 'exact_match' (the final number, GSM8K), 'rouge' (ROUGE-1/2/L F1) or 'answer' (the output starts
    with the reference answer word, case-insensitive: instruction-tuned classification). The pairs come from `files`
    (train and test, under $P2P_DATA_DIR or absolute; JSONL, JSON, CSV, TSV or Parquet) with their `fields`, or,
    for a published format that needs code of its own, from a `reader` of data/generation.py.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    dataset: str
    name: str = Field(alias="task")
    template: str
    metric: Literal["exact_match", "rouge", "answer"]
    reader: str | None = None
    files: dict[Literal["train", "test"], str] = Field(default_factory=dict)
    fields: PairFields = Field(default_factory=PairFields)
    attack: dict[str, Any] = Field(default_factory=dict, description="attack settings the config does not give")

    @model_validator(mode="after")
    def _one_source_of_pairs(self) -> "GenerationTask":
        if "{source}" not in self.template:
            raise ValueError("template: must hold {source}, where the input goes")
        if (self.reader is None) == (not self.files):
            raise ValueError("give either files (train and test) with their fields, or a reader")
        if self.files and set(self.files) != {"train", "test"}:
            raise ValueError("files: give both splits, train and test")
        return self


TASK_FOLDER = Path(__file__).parent / "generation_tasks"


def read_generation_task(path: Path) -> GenerationTask:
    """One task file; its name (without .yaml) is the dataset name a config uses."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return GenerationTask.model_validate({**(data or {}), "dataset": path.stem})
    except (yaml.YAMLError, TypeError) as exc:
        raise ConfigError(f"{path}: not a task file ({one_line(str(exc))})") from None
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_problems(exc)}") from None


GENERATION_TASKS: dict[str, GenerationTask] = {
    path.stem: read_generation_task(path) for path in sorted(TASK_FOLDER.glob("*.yaml"))
}
"""Every task file of generation_tasks/, by dataset name: a new task is one file there."""


def generation_task(dataset: str) -> GenerationTask:
    try:
        return GENERATION_TASKS[dataset]
    except KeyError:
        raise ConfigError(
            f"no generation task for dataset '{dataset}'; known: {', '.join(sorted(GENERATION_TASKS))}"
        ) from None
