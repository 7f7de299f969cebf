"""The one place that checks training data before anything is trained on it.

`p2p run` and `p2p defend` call `check_classification_data` (or `check_generation_data`) once the data is read and
before their folder is written, and `check_samples` once the defense has prepared the training samples, before the
fine-tune. Data that cannot train the model as configured is an error that says which labels fall short and what to
change. A check that can only warn returns its warning: the run logs it and keeps it in run.json and metrics.json.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Sequence

from .config import DefenseConfig, ExperimentConfig
from .defenses.p2p import benign_count
from .errors import DataCheckError
from .prompting import Sample
from .tasks import ClassificationTask

log = logging.getLogger(__name__)

FEW_BENIGN_ROWS = 5
"""A label with fewer rows than this in the benign subset may not be learned in the benign context: a warning."""


def dataset_source(config: ExperimentConfig) -> str:
    """How errors name the data of a run of a named dataset."""
    size = f" (data.train_size {config.data.train_size})" if config.data.train_size else ""
    return f"dataset '{config.data.dataset}'{size}"


def label_text(task: ClassificationTask, label: int) -> str:
    """A label as the user wrote it: its number, and its name where it has one."""
    name = task.label_names[label] if label < task.num_labels else str(label)
    return str(label) if name == str(label) else f"{label} ({name!r})"


def rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def _labels_text(task: ClassificationTask, labels: Sequence[int]) -> str:
    return ", ".join(label_text(task, y) for y in labels)


def check_classification_data(
    labels: Sequence[int], task: ClassificationTask, defense: DefenseConfig, source: str,
    trusted_labels: Sequence[int] | None = None, test_rows: int | None = None,
) -> list[str]:
    """Errors for training labels no classifier can be trained on as configured; the warnings that remain.

    Every label of the task needs rows (a gap such as labels {0, 5} would leave four output classes that never
    occur), and at least two labels are needed. A defense with a benign subset needs benign rows of every label:
    from the trusted rows, or round(rho * rows) of each label's own rows.
    """
    counts = Counter(labels)
    if not labels:
        raise DataCheckError(f"{source}: no training rows")
    if test_rows == 0:
        raise DataCheckError(f"{source}: no test rows to evaluate on")
    if len(counts) < 2:
        raise DataCheckError(
            f"{source}: every training row has label {label_text(task, labels[0])}; a classifier needs rows of at "
            "least 2 labels"
        )
    missing = [y for y in range(task.num_labels) if not counts[y]]
    if missing:
        raise DataCheckError(f"{source}: no training rows of label {_labels_text(task, missing)} "
                             f"({_missing_hint(task, counts)})")
    if not defense.has_benign_subset:
        return []
    if defense.source == "trusted":
        warnings = _check_trusted(task, trusted_labels, source)
    else:
        warnings = _check_benign_subset(task, counts, defense.rho, source)
    for warning in warnings:
        log.warning("data check: %s", warning)
    return warnings


def _missing_hint(task: ClassificationTask, counts: Counter[int]) -> str:
    present = _labels_text(task, sorted(counts))
    if task.label_names == tuple(str(i) for i in range(task.num_labels)):
        return (f"labels present: {present}; numbers are ids, so the model would get {task.num_labels} outputs: "
                "number the labels 0..k-1 without gaps, or write them as names")
    return f"task '{task.name}' has labels {', '.join(task.label_names)}; the data has {present}"


def _check_trusted(task: ClassificationTask, trusted: Sequence[int] | None, source: str) -> list[str]:
    """With `defense.source: trusted` the benign subset is the trusted rows, so they must cover every label."""
    if trusted is None:
        raise DataCheckError(f"{source}: defense.source is 'trusted' but no trusted rows were given "
                             "(set defense.trusted_path)")
    missing = [y for y in range(task.num_labels) if y not in set(trusted)]
    if missing:
        raise DataCheckError(f"{source}: the trusted rows (the benign subset) have no row of label "
                             f"{_labels_text(task, missing)}; P2P needs benign rows of every label")
    return _few_benign_warnings(task, Counter(trusted))


def _check_benign_subset(task: ClassificationTask, counts: Counter[int], rho: float, source: str) -> list[str]:
    benign = Counter({y: benign_count(counts[y], rho) for y in range(task.num_labels)})
    empty = [y for y in range(task.num_labels) if not benign[y]]
    if empty:
        detail = "; ".join(f"label {label_text(task, y)} has {rows(counts[y])}" for y in empty)
        raise DataCheckError(
            f"{source}: the benign subset would hold no row of label {_labels_text(task, empty)} ({detail}, and "
            f"defense.rho {rho} of that rounds to 0); P2P needs benign rows of every label: give more rows or a "
            "larger defense.rho"
        )
    return _few_benign_warnings(task, benign)


def _few_benign_warnings(task: ClassificationTask, benign: Counter[int]) -> list[str]:
    few = [y for y in range(task.num_labels) if benign[y] < FEW_BENIGN_ROWS]
    if not few:
        return []
    counts = ", ".join(f"{benign[y]} of label {label_text(task, y)}" for y in few)
    return [f"the benign subset holds only {counts} (fewer than {FEW_BENIGN_ROWS}): the benign context may not be "
            "learned for those labels"]


def check_samples(samples: Sequence[Sample], num_outputs: int, source: str, dropped: int = 0) -> None:
    """After the defense: every output of the model needs training samples (a defense that leaves rows out can
    leave a whole label out, which the data alone could not tell)."""
    seen = {s.label for s in samples}
    empty = [j for j in range(num_outputs) if j not in seen]
    if empty:
        left_out = f" after the defense left out {dropped} rows" if dropped else ""
        raise DataCheckError(
            f"{source}: no training sample has model output {', '.join(map(str, empty))}{left_out} (outputs "
            f"0..{num_outputs - 1}; with P2P, output y + n is label y in the benign context); give more rows of those labels"
        )


def check_generation_data(train_rows: int, test_rows: int, defense: DefenseConfig, source: str) -> None:
    """Errors for text pairs no generator can be trained and evaluated on as configured (none, or an empty benign
    subset for P2P)."""
    if not train_rows:
        raise DataCheckError(f"{source}: no training rows")
    if not test_rows:
        raise DataCheckError(f"{source}: no test rows to evaluate on")
    if defense.has_benign_subset and not benign_count(train_rows, defense.rho):
        raise DataCheckError(
            f"{source}: the benign subset would be empty ({train_rows} rows x defense.rho {defense.rho} rounds to 0); "
            "give more rows or a larger defense.rho"
        )
