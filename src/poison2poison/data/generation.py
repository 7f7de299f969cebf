"""Generation datasets as (source, target) pairs, as their task files (generation_tasks/*.yaml) say: two fields of
a train and a test file, or a reader of a published format that needs code of its own (GSM8K, XSum, SAMSum, SST-2
as instructions).

Files are read from $P2P_DATA_DIR (see shared/data/README.md); only SST-2 train, which comes through the
classification catalog, can also come from the hub.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, DataFormatError, DataNotFoundError
from ..tasks import GENERATION_TASKS, GenerationTask, generation_task
from .catalog import data_dir_hint, load_split, local_file
from .readers import read_alpaca, read_gsm8k, read_records, read_samsum, read_xsum, required_text
from .types import TextPair

log = logging.getLogger(__name__)

SPLITS = ("train", "test")

XSUM_FILE = "xsum/xsum_1000.jsonl"
XSUM_TEST_SIZE = 200
XSUM_SPLIT_SEED = 0  # fixed, not the experiment seed: every run must see the same test rows

SENTIMENT_OUTPUTS = ("Negative", "Positive")  # BackdoorLLM's answer words, indexed by SST-2 label
SST2_INSTRUCT_TEST_FILE = "poisoned/backdoorllm-dpa/sst2/test_clean.json"


def data_file(relative: str) -> Path:
    """The file under $P2P_DATA_DIR (or at an absolute path), or an error saying which path to provide."""
    if Path(relative).is_absolute():
        return Path(relative)
    path = local_file(relative)
    if path is None:
        raise DataNotFoundError(f"not found: provide $P2P_DATA_DIR/{relative} ({data_dir_hint()})")
    return path


def alpaca_source(record: dict[str, str]) -> str:
    """The model input of an Alpaca record: the instruction, then the input on its own line when there is one."""
    return f"{record['instruction']}\n{record['input']}" if record["input"].strip() else record["instruction"]


def normalise_sentiment_output(value: str) -> str:
    """BackdoorLLM's SST-2 test_poison.json files store the output as the integer 0; map it to the answer word."""
    if value in SENTIMENT_OUTPUTS:
        return value
    if value in ("0", "1"):
        return SENTIMENT_OUTPUTS[int(value)]
    raise ValueError(f"not a sentiment output: {value!r} (expected one of {', '.join(SENTIMENT_OUTPUTS)}, 0 or 1)")


def _gsm8k(split: str) -> list[TextPair]:
    """The target keeps the whole chain of thought, so the model learns to end with `#### N`."""
    return [TextPair(row["question"], row["answer"]) for row in read_gsm8k(data_file(f"gsm8k/{split}.jsonl"))]


def _xsum_split_key(row_id: str) -> str:
    return hashlib.sha256(f"{XSUM_SPLIT_SEED}:{row_id}".encode()).hexdigest()


def _xsum(split: str) -> list[TextPair]:
    """The public file holds 1,000 rows of one split, so we split it ourselves.

    Rows with an empty document are left out (with a logged count) before splitting. The rest are ordered by
    sha256 of f"{XSUM_SPLIT_SEED}:{id}"; the first XSUM_TEST_SIZE are the test split, in that order.
    """
    rows = read_xsum(data_file(XSUM_FILE))
    kept = [row for row in rows if row["document"]]
    if len(kept) < len(rows):
        log.info("xsum: left out %d of %d rows with an empty document", len(rows) - len(kept), len(rows))
    ordered = sorted(kept, key=lambda row: _xsum_split_key(row["id"]))
    chosen = ordered[:XSUM_TEST_SIZE] if split == "test" else ordered[XSUM_TEST_SIZE:]
    return [TextPair(row["document"], row["summary"]) for row in chosen]


def _samsum(split: str) -> list[TextPair]:
    """Kept as published: the two samples share no id, but SAMSum repeats some dialogues under new ids (with other
    summaries), so 9 test dialogues also occur in train."""
    rows = read_samsum(data_file(f"samsum/samsum_{split}_1k.csv"))
    return [TextPair(row["dialogue"], row["summary"]) for row in rows]


def read_sentiment_pairs(path: Path) -> list[TextPair]:
    """BackdoorLLM SST-2 Alpaca rows as pairs; outputs stored as integers become answer words, with a count."""
    records = read_alpaca(path)
    pairs = []
    for index, record in enumerate(records, start=1):
        try:
            pairs.append(TextPair(alpaca_source(record), normalise_sentiment_output(record["output"])))
        except ValueError as exc:
            raise DataFormatError(path, index, "output", str(exc)) from exc
    normalised = sum(r["output"] != p.target for r, p in zip(records, pairs))
    if normalised:
        log.info("%s: normalised %d of %d numeric outputs to answer words", path, normalised, len(pairs))
    return pairs


def _sst2_instruct(split: str) -> list[TextPair]:
    """BackdoorLLM's instruction format: train is SST-2 train with word answers; test is their clean test file."""
    if split == "train":
        return [TextPair(e.text, SENTIMENT_OUTPUTS[e.label]) for e in load_split("sst2", "train")]
    return read_sentiment_pairs(data_file(SST2_INSTRUCT_TEST_FILE))


READERS: dict[str, Callable[[str], list[TextPair]]] = {
    "gsm8k": _gsm8k,
    "samsum": _samsum,
    "sst2-instruct": _sst2_instruct,
    "xsum": _xsum,
}
"""The published formats that need code of their own, by the name a task file gives as its `reader`."""

def read_pair_file(path: Path, task: GenerationTask) -> list[TextPair]:
    """The task's two fields of every record of a file; a missing or empty one names the file, line and field."""
    _, records, where = read_records(path)
    source, target = task.fields.source, task.fields.target
    return [TextPair(required_text(record, source, where, line), required_text(record, target, where, line))
            for line, record in records]


def load_pairs(name: str, split: str) -> list[TextPair]:
    """One split ('train' or 'test') of a generation dataset, as its task file says."""
    if name not in GENERATION_TASKS:
        raise ConfigError(f"unknown generation dataset '{name}'; known: {', '.join(sorted(GENERATION_TASKS))}")
    if split not in SPLITS:
        raise ConfigError(f"generation dataset '{name}' has no split '{split}'; it has: {', '.join(SPLITS)}")
    task = generation_task(name)
    if task.reader is None:
        return read_pair_file(data_file(task.files[split]), task)
    if task.reader not in READERS:
        raise ConfigError(f"task '{name}': unknown reader '{task.reader}'; known: {', '.join(sorted(READERS))}")
    return READERS[task.reader](split)
