"""The served model: a defended classifier or generator, answering one batch of inputs at a time.

Both load through the validated manifest (DefendedModel, DefendedGenerator) and apply the defense to every input;
nothing here can query the model any other way, except the flip detector's second, plain reading of a classifier,
whose answer never leaves the server (only whether it agrees).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from ..api import DefendedGenerator, DefendedModel
from ..inference import projected_probabilities, score_samples
from ..manifest import read_manifest
from ..prompting import PLAIN_CUE
from ..specs import InferenceSpec
from .secrecy import TriggerRedactor


@dataclass(frozen=True)
class ClassifyItem:
    text: str
    detect: bool


@dataclass(frozen=True)
class ClassifyAnswer:
    label: int
    probabilities: tuple[float, ...]
    """One per label, in the original label space."""
    suspected_trigger: bool | None
    """With detect: whether the answer without the trigger differs."""


@dataclass(frozen=True)
class GenerateItem:
    source: str
    max_new_tokens: int


@dataclass(frozen=True)
class GenerateAnswer:
    text: str
    """Safe prefix stripped, trigger redacted."""
    had_prefix: bool
    hit_length: bool
    """The answer used every token it was allowed."""


def plain_reading(spec: InferenceSpec, num_labels: int) -> InferenceSpec:
    """How the model reads an input shown without the defense: no trigger, the ordinary cue, and output j as label
    j mod n (the ordinary context was trained on the original labels, for P2P and PDB alike)."""
    return InferenceSpec(spec.defense, "", PLAIN_CUE, tuple(j % num_labels for j in range(spec.num_outputs)))


class _ServedModel:
    """What the two backends share: a defended model whose spec names its defense and holds its trigger."""

    model: DefendedModel | DefendedGenerator

    @property
    def trigger(self) -> str:
        return self.model.spec.trigger

    @property
    def defense(self) -> str:
        return self.model.spec.defense


class ClassifierBackend(_ServedModel):
    task_type = "classification"

    def __init__(self, model: DefendedModel) -> None:
        self.model = model
        self.plain = plain_reading(model.spec, len(model.label_names))

    def answer(self, items: list[ClassifyItem]) -> list[ClassifyAnswer]:
        """Labels and probabilities read as DefendedModel reads them (the top output, projected), and, for items
        that ask, whether the plain reading's label differs."""
        texts = [item.text for item in items]
        scores = self._scores(self.model.spec, texts)
        labels = [self.model.spec.project(j) for j in scores.argmax(axis=1)]
        probabilities = projected_probabilities(scores, self.model.spec.label_of_output)
        checked = [i for i, item in enumerate(items) if item.detect]
        plain = self._scores(self.plain, [texts[i] for i in checked]).argmax(axis=1) if checked else []
        flipped = {i: self.plain.project(j) != labels[i] for i, j in zip(checked, plain)}
        return [ClassifyAnswer(label, tuple(float(p) for p in row), flipped.get(i))
                for i, (label, row) in enumerate(zip(labels, probabilities))]

    def _scores(self, spec: InferenceSpec, texts: list[str]) -> np.ndarray:
        return score_samples(self.model.loaded, [spec.present(t) for t in texts], self.model.max_length,
                             batch_size=max(len(texts), 1), label="serve")


class GeneratorBackend(_ServedModel):
    task_type = "generation"

    def __init__(self, model: DefendedGenerator) -> None:
        self.model = model
        self.redact = TriggerRedactor(model.spec.trigger)

    def answer(self, items: list[GenerateItem]) -> list[GenerateAnswer]:
        """Greedy answers; items with the same token budget are generated together."""
        by_budget: dict[int, list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            by_budget[item.max_new_tokens].append(i)
        answers: dict[int, GenerateAnswer] = {}
        for budget, rows in by_budget.items():
            outputs = self.model.generate_checked([items[i].source for i in rows], budget, batch_size=len(rows))
            for i, output in zip(rows, outputs):
                answers[i] = GenerateAnswer(self.redact(output.text), output.had_prefix,
                                            self._tokens(output.text) >= budget)
        return [answers[i] for i in range(len(items))]

    def _tokens(self, text: str) -> int:
        return len(self.model.loaded.tokenizer(text, add_special_tokens=False)["input_ids"])


Backend = Union[ClassifierBackend, GeneratorBackend]


def _is_generator(directory: Path) -> bool:
    return read_manifest(directory).get("task_type") == "generation"


def check_model_dir(directory: Path) -> None:
    """The manifest validated and checked against the weights, without loading them: what `p2p serve` checks
    before it listens, so that a bad folder is one clear error rather than a worker that fails to start."""
    (DefendedGenerator if _is_generator(directory) else DefendedModel).manifest(directory)


def load_backend(directory: Path) -> Backend:
    """The model in `directory`, by its manifest's task type, validated and bound to its weights."""
    if _is_generator(directory):
        return GeneratorBackend(DefendedGenerator.load(directory))
    return ClassifierBackend(DefendedModel.load(directory))
