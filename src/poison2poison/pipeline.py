"""run_experiment: the one place where the stages meet.

attack -> subsample -> defense -> fine-tune -> evaluate, writing a self-describing run directory:
config.yaml, metrics.json, predictions.jsonl, model/, p2p.json (the inference manifest), train.json, log.txt.
A finished run is skipped; an interrupted one resumes from its saved model or its last checkpoint.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .attacks import PoisonedData, build_attack
from .config import ExperimentConfig
from .data.catalog import dataset_spec, load_split, read_user_data
from .data.generation import GENERATION_DATASETS
from .data.types import Example, as_records
from .defenses import DefenseContext, InferenceSpec, PreparedTrain, build_defense
from .errors import ConfigError
from .generation_pipeline import run_generation
from .inference import predict
from .io import (
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    content_hash,
    read_json,
)
from .metrics import attack_success_rate, clean_accuracy
from .models import LoadedModel
from .rundir import (
    MANIFEST,
    finished_record,
    guard_run_dir,
    is_main_process,
    run_log,
    with_pinned_secret,
)
from .screening import SCREENING_VERSION, screen_rows
from .seeding import stage_rng, stratified_sample
from .summary import METRICS
from .tasks import ClassificationTask
from .training import fit_new_model, trained_model

log = logging.getLogger(__name__)

@dataclass
class ExperimentData:
    task: ClassificationTask
    poisoned: PoisonedData
    test: list[Example]
    held_out_clean: list[Example] = field(default_factory=list)
    """Clean training rows left out of the subsample: the source of a simulated trusted set."""


def prepare_data(config: ExperimentConfig) -> ExperimentData:
    """Load, poison and subsample. Poisoned rows keep their share in the subsample (it is stratified by label and
    by the ground-truth mask), so the poison rate survives subsampling."""
    spec = dataset_spec(config.data.dataset)
    train = load_split(config.data.dataset, "train")
    test = load_split(config.data.dataset, config.data.test_split)
    attack = build_attack(config.attack, config.data.dataset, spec.task.num_labels)
    poisoned = attack.poison(train, test, stage_rng(config.seed, "attack"))
    keep = stratified_sample(
        [(e.label, m) for e, m in zip(poisoned.train, poisoned.mask)], config.data.train_size,
        stage_rng(config.seed, "train-subsample"),
    )
    kept = set(keep)
    held_out_clean = [e for i, (e, m) in enumerate(zip(poisoned.train, poisoned.mask)) if i not in kept and not m]
    poisoned.train = [poisoned.train[i] for i in keep]
    poisoned.mask = [poisoned.mask[i] for i in keep]
    test_keep = stratified_sample([e.label for e in test], config.data.test_size, stage_rng(config.seed, "test-subsample"))
    asr_keep = stratified_sample(
        [e.label for e in poisoned.asr_test], config.data.test_size, stage_rng(config.seed, "asr-subsample")
    )
    poisoned.asr_test = [poisoned.asr_test[i] for i in asr_keep]
    return ExperimentData(spec.task, poisoned, [test[i] for i in test_keep], held_out_clean)


def simulated_trusted_set(config: ExperimentConfig, data: ExperimentData) -> list[Example] | None:
    """For experiments: `defense.trusted_size` clean training rows outside the subsample, stratified by label,
    standing in for a set the defender vouches for."""
    size = config.defense.trusted_size
    if size is None:
        return None
    pool = data.held_out_clean
    if size > len(pool):
        raise ConfigError(f"defense.trusted_size {size} exceeds the {len(pool)} clean rows left outside the subsample")
    keep = stratified_sample([e.label for e in pool], size, stage_rng(config.seed, "trusted"))
    return [pool[i] for i in keep]


def apply_defense(
    config: ExperimentConfig,
    task: ClassificationTask,
    train: list[Example],
    clean_rows: list[int] | None = None,
    trusted: list[Example] | None = None,
    screening_path: Path | None = None,
) -> PreparedTrain:
    """Run the configured defense. `clean_rows` (the ground truth) reaches it only for the oracle experiment.

    Screening, when asked for, runs here; with `screening_path` its result is saved there and reused on resume.
    """
    defense = build_defense(config.defense, task)
    context = DefenseContext(trusted=trusted)
    if config.defense.trusted_path:
        context.trusted = read_user_data(config.defense.trusted_path, task.num_labels)
    if config.defense.has_benign_subset and config.defense.source == "oracle":
        if clean_rows is None:
            raise ConfigError("defense.source 'oracle' needs a simulated attack's ground truth; use 'random' or 'trusted'")
        context.oracle_pool = clean_rows
    screen_seconds: dict[str, float] = {}
    if config.defense.has_benign_subset and config.defense.screen:
        context.suspicion, screen_seconds = screened_suspicion(config, task, train, screening_path)
    prepared = defense.prepare(train, stage_rng(config.seed, "defense"), context)
    if screen_seconds:
        prepared.details["screen_seconds"] = screen_seconds
    return prepared


SCREEN_CACHE_ENV = "P2P_CACHE_DIR"
SCREEN_FIELDS = ("screen", "screen_model", "screen_epochs", "screen_learning_rate", "screen_min_count")


def screening_key(config: ExperimentConfig, train: list[Example]) -> str:
    """What screening depends on, and nothing else: rows that differ only in how they use it share it."""
    screen = {f: getattr(config.defense, f) for f in SCREEN_FIELDS}
    return content_hash(
        [as_records(train), screen, config.model.model_dump(mode="json"), config.train.model_dump(mode="json"),
         config.seed, SCREENING_VERSION]
    )


def screened_suspicion(
    config: ExperimentConfig, task: ClassificationTask, train: list[Example], path: Path | None
) -> tuple[list[float], dict[str, float]]:
    """Suspicion per row, computed once per training set and screening setting, then read back.

    It is saved at `path` (the run's own copy) and, when $P2P_CACHE_DIR is set, under it by content, so that runs
    that screen the same data the same way (a benchmark's rows) compute it once. The seconds kept are those of the
    computation, so cost accounting stays honest when a run reads a cached result.
    """
    key = screening_key(config, train)
    cache_dir = os.environ.get(SCREEN_CACHE_ENV)
    places = [p for p in (path, Path(cache_dir) / "screening" / f"{key}.json" if cache_dir else None) if p]
    found = {place: _read_screening(place, key) for place in places}
    saved = next((s for s in found.values() if s is not None), None)
    if saved is None:
        suspicion, seconds = screen_rows(config, task, train)
        saved = {"key": key, "suspicion": [round(float(v), 6) for v in suspicion], "seconds": seconds}
    if is_main_process():
        for place in (p for p, s in found.items() if s is None):
            atomic_write_json(place, saved)
    return saved["suspicion"], saved["seconds"]


def _read_screening(place: Path, key: str) -> dict[str, Any] | None:
    if not place.is_file():
        return None
    saved = read_json(place)
    if saved.get("key") != key:
        return None
    log.info("screening already done; reading %s", place)
    return saved


def train_model(
    config: ExperimentConfig, task: ClassificationTask, prepared: PreparedTrain, run_dir: Path
) -> tuple[LoadedModel, dict[str, Any]]:
    """Fine-tune and save, or load the model an earlier attempt already saved."""
    words = task.answer_words(prepared.spec.num_outputs)
    return trained_model(
        run_dir,
        lambda checkpoints: fit_new_model(
            config.model, config.train, prepared.samples, words, config.seed, checkpoints, prepared.loss
        ),
    )


def evaluate(
    config: ExperimentConfig, loaded: LoadedModel, spec: InferenceSpec, data: ExperimentData
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """CA on the clean test set and ASR on the triggered non-target set, both through the defense's spec."""
    length, batch = config.model.max_length, config.train.eval_batch_size
    clean_pred, clean_raw = predict(loaded, spec, [e.text for e in data.test], length, batch, "clean test")
    asr_set = data.poisoned.asr_test
    asr_pred, asr_raw = predict(loaded, spec, [e.text for e in asr_set], length, batch, "triggered test")
    ca, ca_count = clean_accuracy(clean_pred, [e.label for e in data.test])
    asr, asr_count = attack_success_rate(asr_pred, [e.label for e in asr_set], config.attack.target)
    rows = [
        {"split": split, "index": i, "label": e.label, "prediction": p, "raw_output": r}
        for split, examples, preds, raws in (
            ("clean", data.test, clean_pred, clean_raw),
            ("triggered", asr_set, asr_pred, asr_raw),
        )
        for i, (e, p, r) in enumerate(zip(examples, preds, raws))
    ]
    metrics = {
        "clean_accuracy": ca,
        "clean_count": ca_count,
        "attack_success_rate": asr,
        "asr_count": asr_count,
    }
    return metrics, rows


def run_experiment(config: ExperimentConfig, run_dir: str | Path) -> dict[str, Any]:
    """attack -> defense -> fine-tune -> evaluate; returns the metrics written to RUN_DIR/metrics.json.

    Datasets of text pairs (GSM8K, XSum, SAMSum, SST-2 as instructions) take the generation path.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    done = guard_run_dir(run_dir, config)
    if done is not None:
        log.info("%s already finished; skipping", run_dir)
        return done
    with run_log(run_dir):
        if is_main_process():
            atomic_write_text(run_dir / "config.yaml", config.to_yaml())
        if config.data.dataset in GENERATION_DATASETS:
            return run_generation(config, run_dir)
        return run_classification(config, run_dir)


def run_classification(config: ExperimentConfig, run_dir: Path) -> dict[str, Any]:
    """The classification path of `run_experiment`, inside its run log."""
    started = time.perf_counter()
    data = prepare_data(config)
    clean_rows = [i for i, poisoned in enumerate(data.poisoned.mask) if not poisoned]
    prepared = apply_defense(
        with_pinned_secret(config, run_dir), data.task, data.poisoned.train, clean_rows,
        simulated_trusted_set(config, data), run_dir / "screening.json",
    )
    log.info("data: %d train rows (%d poisoned), %d clean test, %d triggered test",
             len(data.poisoned.train), data.poisoned.poisoned_count, len(data.test), len(data.poisoned.asr_test))
    loaded, train_stats = train_model(config, data.task, prepared, run_dir)
    if not is_main_process():
        return {}
    atomic_write_json(run_dir / MANIFEST, manifest(config, data.task, prepared))
    eval_start = time.perf_counter()
    metrics, rows = evaluate(config, loaded, prepared.spec, data)
    atomic_write_jsonl(run_dir / "predictions.jsonl", rows)
    defended = [[s.text, s.label, s.trigger, s.cue] for s in prepared.samples]
    metrics.update(finished_record(config, data.poisoned, defended, data.test, train_stats, started, eval_start))
    metrics.update(defense_accounting(config, data, prepared))
    atomic_write_json(run_dir / METRICS, metrics)
    log.info("CA %.4f (n=%d)  ASR %.4f (n=%d)", metrics["clean_accuracy"], metrics["clean_count"],
             metrics["attack_success_rate"], metrics["asr_count"])
    return metrics


def defense_accounting(config: ExperimentConfig, data: ExperimentData, prepared: PreparedTrain) -> dict[str, Any]:
    """What the defense did, scored against the ground truth after the fact (the defense never saw the mask)."""
    mask = data.poisoned.mask
    screen = prepared.details.get("screen_seconds", {})
    return {
        "benign_rows": len(prepared.benign_rows),
        "benign_poisoned": sum(mask[i] for i in prepared.benign_rows),
        "dropped_rows": len(prepared.dropped_rows),
        "dropped_poisoned": sum(mask[i] for i in prepared.dropped_rows),
        "screen_seconds": round(sum(screen.values()), 2),
    }


def manifest(config: ExperimentConfig, task: ClassificationTask, prepared: PreparedTrain) -> dict[str, Any]:
    """Everything predict needs to present a query and read the answer; it holds the trigger: keep it private."""
    return {
        "format": 1,
        "inference": prepared.spec.to_json(),
        "label_names": list(task.label_names),
        "task": task.name,
        "max_length": config.model.max_length,
        "defense_details": prepared.details,
    }
