"""Named datasets. A name resolves to a folder under $P2P_DATA_DIR, then to its hub id, then to a clear error."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import DataNotFoundError, one_line
from ..tasks import SENTIMENT, TOPIC, ClassificationTask
from .labels import Where
from .readers import Fields, LabelledRows, labelled_examples, read_labelled
from .types import Example

log = logging.getLogger(__name__)

DATA_DIR_ENV = "P2P_DATA_DIR"

Reader = Callable[[Path, ClassificationTask], list[Example]]


def _file(path: Path, task: ClassificationTask) -> list[Example]:
    return read_labelled(path, known_names=task.label_names).examples


def _aligned_file(path: Path, task: ClassificationTask) -> list[Example]:
    """Row-aligned rewrites keep their empty rows; the attack that uses them skips those with a count."""
    return read_labelled(path, known_names=task.label_names, allow_empty=True).examples


def local_file(relative: str) -> Path | None:
    """The file at `relative` under $P2P_DATA_DIR, or None when the variable is unset or the file is missing."""
    root = os.environ.get(DATA_DIR_ENV)
    if not root:
        return None
    path = Path(root).expanduser() / relative
    return path if path.is_file() else None


def data_dir_hint() -> str:
    """Where $P2P_DATA_DIR points, for not-found errors."""
    root = os.environ.get(DATA_DIR_ENV)
    return f"P2P_DATA_DIR is '{root}'" if root else "P2P_DATA_DIR is not set"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a named classification dataset lives and how to read it."""

    name: str
    folder: str
    files: dict[str, str]
    reader: Reader
    task: ClassificationTask
    hub_id: str | None = None
    hub_splits: dict[str, str] = field(default_factory=dict)
    hub_text_field: str = "text"

    def local_path(self, split: str) -> Path | None:
        return local_file(f"{self.folder}/{self.files[split]}")


CATALOG: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "sst2", "sst2", {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"}, _file, SENTIMENT,
            hub_id="SetFit/sst2", hub_splits={"train": "train", "dev": "validation", "test": "test"},
        ),
        DatasetSpec(
            "agnews", "agnews", {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}, _file, TOPIC,
            hub_id="fancyzhx/ag_news", hub_splits={"train": "train", "test": "test"},
        ),
        DatasetSpec(
            "hiddenkiller-sst2", "poisoned/hiddenkiller-sst2",
            {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}, _file, SENTIMENT,
        ),
        DatasetSpec(
            "onion-badnets-sst2", "poisoned/onion-badnets-sst2",
            {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}, _file, SENTIMENT,
        ),
        DatasetSpec(
            "stylebkd-bible-sst2", "poisoned/stylebkd-bible-sst2",
            {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}, _aligned_file, SENTIMENT,
        ),
    )
}


def dataset_spec(name: str) -> DatasetSpec:
    try:
        return CATALOG[name]
    except KeyError:
        raise DataNotFoundError(f"unknown dataset '{name}'; known: {', '.join(sorted(CATALOG))}") from None


def load_split(name: str, split: str) -> list[Example]:
    """Read one split of a named dataset: local folder first, then the hub, else an error that says what to do."""
    spec = dataset_spec(name)
    if split not in spec.files:
        raise DataNotFoundError(f"dataset '{name}' has no split '{split}'; it has: {', '.join(spec.files)}")
    path = spec.local_path(split)
    if path is not None:
        return spec.reader(path, spec.task)
    if spec.hub_id and split in spec.hub_splits:
        return _load_from_hub(spec, split)
    expected = f"$P2P_DATA_DIR/{spec.folder}/{spec.files[split]}"
    hub = f" or network access to the hub dataset '{spec.hub_id}'" if spec.hub_id else ""
    raise DataNotFoundError(f"dataset '{name}' split '{split}' not found: provide {expected} ({data_dir_hint()}){hub}")


def _load_from_hub(spec: DatasetSpec, split: str) -> list[Example]:
    hint = (f"no local copy under $P2P_DATA_DIR/{spec.folder}; set P2P_DATA_DIR to a folder holding "
            f"{spec.folder}/{spec.files[split]}")
    rows = hub_examples(spec.hub_id or "", spec.hub_splits[split], Fields(spec.hub_text_field), spec.task.label_names,
                        hint=f"dataset '{spec.name}': {hint}")
    log.info("loaded %s/%s from the hub (%s)", spec.name, split, spec.hub_id)
    return rows.examples


def hub_examples(
    hub_id: str, split: str, fields: Fields, known_names: Sequence[str] | None = None, hint: str = ""
) -> LabelledRows:
    """A hub dataset's split as labelled rows, through the same checks as a file (an error names the row). A
    `ClassLabel` label column's names are kept as the label names."""
    import datasets  # only users with network reach this path

    try:
        rows = datasets.load_dataset(hub_id, split=split)
    except Exception as exc:  # the hub client raises many kinds; all mean "not reachable here"
        raise DataNotFoundError(
            f"{hint + ': ' if hint else ''}the hub dataset '{hub_id}' (split '{split}') could not be loaded "
            f"({type(exc).__name__}: {one_line(str(exc))}); it needs network access to the Hugging Face hub"
        ) from exc
    class_names = getattr(rows.features.get(fields.label), "names", None)
    where = Where(f"{HUB_PREFIX}{hub_id}:{split}", "row")
    labelled = labelled_examples(list(enumerate(rows, start=1)), where, fields, rows.column_names,
                                 known_names or class_names)
    return LabelledRows(labelled.examples, labelled.label_names or (None if known_names else class_names))


HUB_PREFIX = "hub:"


def read_user_data(
    source: str | Path, fields: Fields = Fields(), known_names: Sequence[str] | None = None
) -> LabelledRows:
    """A user's own labelled data: a file of any supported format (see `data.readers.read_records`), or, for users
    with network, a hub dataset as `hub:ID` or `hub:ID:SPLIT` (split `train` by default).

    `known_names` are the labels the data must use (a named task's, or those of the training data a trusted file
    goes with); without them, integer labels are ids and names are numbered in sorted order.
    """
    text = str(source)
    if text.startswith(HUB_PREFIX):
        hub_id, _, split = text[len(HUB_PREFIX):].partition(":")
        return hub_examples(hub_id, split or "train", fields, known_names)
    return read_labelled(Path(source), fields, known_names)
