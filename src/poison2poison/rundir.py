"""The run-directory contract every task type keeps: one config per folder, a finished run skipped, the log
copied into the folder, and only the main process writing."""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from . import __version__
from .config import ExperimentConfig, defaults_it_predates, load_config, read_yaml_mapping
from .data.types import Example, TextPair, as_records
from .errors import ConfigError
from .io import content_hash, read_json
from .secret import pinned_secret
from .summary import METRICS

if TYPE_CHECKING:
    from .attacks.base import PoisonedData
    from .attacks.generative import PoisonedPairs

MANIFEST = "p2p.json"


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def run_log(run_dir: Path) -> Iterator[None]:
    """Copy this package's log records into RUN_DIR/log.txt (owner-only, as every file of the run) for the duration
    of the run."""
    path = run_dir / "log.txt"
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    os.chmod(path, 0o600)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("poison2poison")
    root.addHandler(handler)
    previous = root.level
    if previous == logging.NOTSET or previous > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


def guard_run_dir(run_dir: Path, config: ExperimentConfig) -> dict[str, Any] | None:
    """The finished metrics if this config already ran here; an error if the folder holds another config.

    The saved config is compared after it is read back with today's defaults, so a run made before a new setting
    (with a default that keeps the old behaviour) existed still counts as the same run. A run made before a default of
    its defense changed does not.
    """
    metrics_path = run_dir / METRICS
    saved = saved_config_hash(run_dir)
    if saved is None:
        return None
    if saved != config.config_hash():
        why = f" (it {saved} of its defense)" if saved.startswith("predates") else ""
        raise ConfigError(f"{run_dir} holds a run of a different config{why}; choose another --out or delete it")
    return read_json(metrics_path) if metrics_path.is_file() else None


def saved_config_hash(run_dir: Path) -> str | None:
    """The hash of the config a run folder holds, read back with today's defaults (None for no run); a marker that
    matches no config where the run predates a default of its defense."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        return None
    predates = defaults_it_predates(read_yaml_mapping(config_path))
    return f"predates the default {', '.join(predates)}" if predates else load_config(config_path).config_hash()


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


def data_hashes(train: Rows, defended: list[list[object]], test: Rows, triggered: Rows) -> dict[str, str]:
    """Content hashes of a run's data at each stage, so that two runs can be shown to have seen the same rows."""
    return {
        "poisoned_train": content_hash(as_records(train)),
        "defended_train": content_hash(defended),
        "clean_test": content_hash(as_records(test)),
        "triggered_test": content_hash(as_records(triggered)),
    }


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


def with_pinned_secret(config: ExperimentConfig, run_dir: Path) -> ExperimentConfig:
    """The config to prepare the defense with. A 'secret' trigger without `secret_seed` is drawn once per run and
    kept in RUN_DIR/secret.json (owner-only, like p2p.json), so a resumed run queries its saved model with the
    trigger it was trained with. The run keeps its own config (and hash) for everything else."""
    defense = config.defense
    if defense.trigger != "secret" or defense.secret_seed is not None:
        return config
    trigger = pinned_secret(run_dir, write=is_main_process()).trigger
    return config.model_copy(update={"defense": defense.model_copy(update={"trigger": trigger})})
