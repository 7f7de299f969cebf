"""Task definitions.

Classification: label names and the answer words (verbalizers) a causal LM is trained to produce. P2P doubles the
label space (y -> y + n), so a classification task also names n benign answer words for the labels n..2n-1.
Encoders need no words; they get a head with one output per label.
Generation: the prompt template around a source text, and the metric that scores outputs against references.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from .errors import ConfigError


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


@dataclass(frozen=True)
class GenerationTask:
    """A text-to-text task: the prompt template around the source, and how outputs are scored against references.

    `metric` is 'exact_match' (the final number, GSM8K), 'rouge' (ROUGE-1/2/L F1) or 'answer' (the output starts
    with the reference answer word, case-insensitive: instruction-tuned classification).
    """

    name: str
    template: str
    metric: Literal["exact_match", "rouge", "answer"]


GENERATION_TASKS: dict[str, GenerationTask] = {
    "gsm8k": GenerationTask("math", "Question: {source}\nSolve it step by step and end with '#### answer'.", "exact_match"),
    "xsum": GenerationTask("summarization", "Summarize the article in one sentence.\n{source}", "rouge"),
    "samsum": GenerationTask("dialogue-summarization", "Summarize the dialogue.\n{source}", "rouge"),
    "sst2-instruct": GenerationTask("instruction", "Instruction: {source}", "answer"),
}


def generation_task(dataset: str) -> GenerationTask:
    try:
        return GENERATION_TASKS[dataset]
    except KeyError:
        raise ConfigError(
            f"no generation task for dataset '{dataset}'; known: {', '.join(sorted(GENERATION_TASKS))}"
        ) from None
