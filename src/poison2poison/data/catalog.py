"""Named datasets. A name resolves to a folder under $P2P_DATA_DIR, then to its hub id, then to a clear error."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import DataNotFoundError
from ..tasks import SENTIMENT, TOPIC, ClassificationTask
from .readers import parse_label, parse_text, read_labeled_jsonl, read_labeled_tsv
from .types import Example

log = logging.getLogger(__name__)

DATA_DIR_ENV = "P2P_DATA_DIR"

Reader = Callable[[Path, int], list[Example]]


def _jsonl(path: Path, num_labels: int) -> list[Example]:
    return read_labeled_jsonl(path, num_labels=num_labels)


def _tsv(path: Path, num_labels: int) -> list[Example]:
    return read_labeled_tsv(path, num_labels=num_labels)


def _aligned_tsv(path: Path, num_labels: int) -> list[Example]:
    """Row-aligned rewrites keep their empty rows; the attack that uses them skips those with a count."""
    return read_labeled_tsv(path, num_labels=num_labels, allow_empty=True)


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
            "sst2", "sst2", {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"}, _jsonl, SENTIMENT,
            hub_id="SetFit/sst2", hub_splits={"train": "train", "dev": "validation", "test": "test"},
        ),
        DatasetSpec(
            "agnews", "agnews", {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}, _tsv, TOPIC,
            hub_id="fancyzhx/ag_news", hub_splits={"train": "train", "test": "test"},
        ),
        DatasetSpec(
            "hiddenkiller-sst2", "poisoned/hiddenkiller-sst2",
            {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}, _tsv, SENTIMENT,
        ),
        DatasetSpec(
            "onion-badnets-sst2", "poisoned/onion-badnets-sst2",
            {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}, _tsv, SENTIMENT,
        ),
        DatasetSpec(
            "stylebkd-bible-sst2", "poisoned/stylebkd-bible-sst2",
            {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}, _aligned_tsv, SENTIMENT,
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
        return spec.reader(path, spec.task.num_labels)
    if spec.hub_id and split in spec.hub_splits:
        return _load_from_hub(spec, split)
    expected = f"$P2P_DATA_DIR/{spec.folder}/{spec.files[split]}"
    hub = f" or network access to the hub dataset '{spec.hub_id}'" if spec.hub_id else ""
    raise DataNotFoundError(f"dataset '{name}' split '{split}' not found: provide {expected} ({data_dir_hint()}){hub}")


def _load_from_hub(spec: DatasetSpec, split: str) -> list[Example]:
    import datasets  # only users with network reach this path

    try:
        rows = datasets.load_dataset(spec.hub_id, split=spec.hub_splits[split])
    except Exception as exc:  # the hub client raises many kinds; all mean "not reachable here"
        raise DataNotFoundError(
            f"dataset '{spec.name}': no local copy under $P2P_DATA_DIR/{spec.folder} and the hub dataset "
            f"'{spec.hub_id}' could not be loaded ({type(exc).__name__}: {exc}). Set P2P_DATA_DIR to a folder "
            f"holding {spec.folder}/{spec.files[split]}."
        ) from exc
    log.info("loaded %s/%s from the hub (%s)", spec.name, split, spec.hub_id)
    source = f"hub:{spec.hub_id}/{spec.hub_splits[split]}"
    return [
        Example(
            parse_text(row[spec.hub_text_field], Path(source), i + 1, spec.hub_text_field),
            parse_label(row["label"], Path(source), i + 1, "label", spec.task.num_labels),
        )
        for i, row in enumerate(rows)
    ]


def read_user_data(path: str | Path, num_labels: int | None = None) -> list[Example]:
    """A user's own labelled file, by extension: .jsonl/.json ({sentence or text, label}) or .tsv."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file")
    if path.suffix in (".tsv", ".txt"):
        return read_labeled_tsv(path, num_labels=num_labels)
    if path.suffix in (".jsonl", ".json"):
        return read_labeled_jsonl(path, text_field=None, num_labels=num_labels)
    raise DataNotFoundError(f"{path}: unsupported extension '{path.suffix}' (use .jsonl, .json or .tsv)")
