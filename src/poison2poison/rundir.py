"""The run-directory contract every task type keeps: one run per folder (its identity is its config and its data),
a finished run skipped, nothing written before the run is validated, the log copied into the folder, and only the
main process writing."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from contextlib import contextmanager
from logging.handlers import MemoryHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ._version import __version__
from .config import ExperimentConfig, in_todays_layout, read_yaml_mapping, validated_config, what_it_predates
from .data.types import Example, TextPair, as_records
from .distributed import is_main_process
from .errors import RunDirError
from .io import atomic_write_json, atomic_write_text, content_hash, read_json
from .secret import SECRET_FILE, holds_private_trigger, make_run_dir

if TYPE_CHECKING:
    from .attacks.base import PoisonedData
    from .attacks.generative import PoisonedPairs

log = logging.getLogger(__name__)

MANIFEST = "p2p.json"
METRICS = "metrics.json"


class RunLog:
    """This package's log records during a run. They are held in memory until the run has claimed its folder (so that
    a run refused before then writes nothing there), then appended to RUN_DIR/log.txt."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.held = MemoryHandler(capacity=1, flushLevel=logging.CRITICAL + 1)  # no target yet: records wait
        self.file: logging.FileHandler | None = None

    def open(self) -> None:
        """Start writing RUN_DIR/log.txt, beginning with the records held so far (on the main process, which claimed
        the folder; the others' records are dropped)."""
        if not is_main_process():
            return
        path = self.run_dir / "log.txt"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))  # owner-only, as every file of the run
        os.chmod(path, 0o600)
        self.file = logging.FileHandler(path, encoding="utf-8")
        self.file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.held.setTarget(self.file)
        self.held.flush()

    def close(self) -> None:
        self.held.close()
        if self.file is not None:
            self.file.close()


@contextmanager
def run_log(run_dir: Path) -> Iterator[RunLog]:
    """Collect this package's log records for the duration of the run; `RunLog.open()` once the folder is claimed."""
    held = RunLog(run_dir)
    root = logging.getLogger("poison2poison")
    root.addHandler(held.held)
    previous = root.level
    if previous == logging.NOTSET or previous > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield held
    finally:
        root.removeHandler(held.held)
        root.setLevel(previous)
        held.close()


def saved_config_hash(run_dir: Path) -> str | None:
    """The hash of the config a run folder holds, read back in today's layout with today's defaults (None for no
    run); a marker that matches no config where the run predates a default of its defense."""
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        return None
    saved = in_todays_layout(read_yaml_mapping(config_path))
    predates = what_it_predates(saved)
    return f"predates {' and '.join(predates)}" if predates else validated_config(saved, str(config_path)).config_hash()


def run_record(config: ExperimentConfig) -> dict[str, Any]:
    """The fields every metrics.json carries to say which run it is, whatever the task type."""
    defense = config.defense
    return {
        "defense": defense.name,
        "defense_source": defense.source if defense.has_benign_subset else None,
        "defense_variant": defense.variant,
        "oracle_experiment_only": defense.has_benign_subset and defense.source == "oracle",
        "attack": config.attack.name,
        "attack_rate": config.attack.rate,
        "model": config.model.name,
        "dataset": config.data.dataset,
        "seed": config.seed,
        "config_hash": config.config_hash(),
        "version": __version__,
    }


Rows = list[Example] | list[TextPair]


def input_hashes(train: Rows, test: Rows, triggered: Rows) -> dict[str, str]:
    """Content hashes of the data a run starts from: with its config, they say which run it is."""
    return {
        "poisoned_train": content_hash(as_records(train)),
        "clean_test": content_hash(as_records(test)),
        "triggered_test": content_hash(as_records(triggered)),
    }


def data_hashes(train: Rows, defended: list[list[object]], test: Rows, triggered: Rows) -> dict[str, str]:
    """Content hashes of a run's data at each stage, so that two runs can be shown to have seen the same rows."""
    return {**input_hashes(train, test, triggered), "defended_train": content_hash(defended)}


def finished_record(
    config: ExperimentConfig, poisoned: PoisonedData | PoisonedPairs, defended: list[list[object]], test: Rows,
    train_stats: dict[str, Any], started: float, eval_started: float,
) -> dict[str, Any]:
    """What every finished run adds to its task's metrics: which run, the data it saw, and how long it took
    (`started` and `eval_started` are `time.perf_counter()` readings)."""
    now = time.perf_counter()
    return {
        **run_record(config),
        "poisoned_count": poisoned.poisoned_count,
        "data_hashes": data_hashes(poisoned.train, defended, test, poisoned.asr_test),
        "eval_seconds": round(now - eval_started, 2),
        "wall_seconds": round(now - started, 2),
        **train_stats,
    }


RUN_RECORD = "run.json"
CONFIG_FILE = "config.yaml"
CLAIM_FILES = (CONFIG_FILE, RUN_RECORD, "log.txt", SECRET_FILE)
"""What a run writes before it starts any work: a folder that holds nothing more holds nothing to lose."""
WORK_FILES = ("screening.json", "filter.json", "checkpoints", "model", "model.tmp", "model.old", "train.json",
              MANIFEST, METRICS, "predictions.jsonl")
"""What a run's work leaves in its folder. With CLAIM_FILES, everything a run writes, and all that --force removes."""


def claim_run_dir(
    run_dir: Path, config: ExperimentConfig, data_hashes: dict[str, str], result: str, force: bool = False,
    warnings: Sequence[str] = (),
) -> dict[str, Any] | None:
    """Make RUN_DIR this run's folder, or find this run already finished there (then its `result` file is returned).

    A run is its config and its data (`data_hashes`): a folder holding a finished result, or work, of another run is
    refused, with what differs and how to go on. A folder holding only the set-up of a run that never started work
    is taken over. `force` first removes everything a run writes (and nothing else). Called once the run is
    validated: the folder, its config.yaml and its run.json are written here, and nothing before.
    """
    if force and is_main_process():
        remove_run_files(run_dir)
    differs = None if force else how_it_differs(run_dir, config, data_hashes)
    finished = (run_dir / result).is_file()
    if differs is None and finished and not force:
        return read_json(run_dir / result)
    if differs is not None and finished:
        raise RunDirError(f"{run_dir} holds a finished run that is not this one: {differs}. Add --force to "
                          "overwrite it, or choose another --out")
    if differs is not None and holds_work(run_dir):
        raise RunDirError(f"{run_dir} holds an unfinished run that is not this one: {differs}. Rerun the command that "
                          f"started it to continue it (its config: {run_dir / CONFIG_FILE}), add --force to start "
                          "this one there instead, or choose another --out")
    if is_main_process():
        if differs is not None:
            log.info("%s held only the set-up of another run, which never started work: starting over", run_dir)
            remove_run_files(run_dir)
        _write_claim(run_dir, config, data_hashes, warnings)
    return None


def _write_claim(run_dir: Path, config: ExperimentConfig, data_hashes: dict[str, str], warnings: Sequence[str]) -> None:
    make_run_dir(run_dir, private=holds_private_trigger(config.defense))
    text = config.to_yaml()
    atomic_write_text(run_dir / CONFIG_FILE, text)
    atomic_write_json(run_dir / RUN_RECORD, {"config_sha256": _sha256(text.encode("utf-8")),
                                             "data_hashes": data_hashes, "data_warnings": list(warnings)})


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def how_it_differs(run_dir: Path, config: ExperimentConfig, data_hashes: dict[str, str]) -> str | None:
    """None when RUN_DIR holds no run, or this one; else what makes the run it holds another."""
    config_path, record_path = run_dir / CONFIG_FILE, run_dir / RUN_RECORD
    if not config_path.is_file():
        if record_path.is_file() or holds_work(run_dir):
            return f"it has no {CONFIG_FILE} to say which run made it"
        return None
    if record_path.is_file():
        record = read_json(record_path)
        if record.get("config_sha256") != _sha256(config_path.read_bytes()):
            return f"its {CONFIG_FILE} is not the one its {RUN_RECORD} records (changed by hand?)"
        recorded = record.get("data_hashes")
    else:  # a run made before run.json existed: if it finished, its metrics record its data hashes
        finished = read_json(run_dir / METRICS) if (run_dir / METRICS).is_file() else {}
        recorded = {k: v for k, v in finished.get("data_hashes", {}).items() if k in data_hashes} or None
    saved = saved_config_hash(run_dir)
    if saved is not None and saved.startswith("predates"):
        return f"it {saved}"
    what = [name for name, same in (("config", saved == config.config_hash()), ("data", recorded == data_hashes))
            if not same]
    if recorded is None and what == ["data"]:
        return f"it records no data hashes (no {RUN_RECORD}: made by an older version, or removed)"
    return f"its {' and '.join(what)} {'differ' if len(what) > 1 else 'differs'}" if what else None


def holds_work(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in WORK_FILES)


def remove_run_files(run_dir: Path) -> None:
    """Remove everything a run writes into RUN_DIR, and nothing else (the folder may hold the user's own files)."""
    for name in (*CLAIM_FILES, *WORK_FILES):
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
