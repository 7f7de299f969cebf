"""run_experiment: the one place where the stages meet.

attack -> subsample -> defense -> fine-tune -> evaluate, writing a self-describing run directory:
config.yaml, metrics.json, predictions.jsonl, model/, p2p.json (the inference manifest), train.json, log.txt.
A finished run is skipped; an interrupted one resumes from its saved model or its last checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .attacks import Attack, PoisonedData, build_attack
from .config import ExperimentConfig, check_model_settings
from .data.catalog import dataset_spec, load_split
from .data.types import Example, as_records
from .datachecks import check_classification_data, check_samples, dataset_source
from .defenses import Defense, PreparedTrain, build_defense
from .defenses.base import Guarded, InputGuard
from .defenses.runner import apply_defense, input_guard, trusted_rows
from .distributed import is_main_process
from .errors import ConfigError
from .generation_pipeline import GenerationSteps
from .inference import predict
from .io import atomic_write_json, atomic_write_jsonl, content_hash
from .manifest import write_manifest
from .metrics import REJECTED, attack_success_rate, clean_accuracy, detection_scores
from .models import LoadedModel
from .models.loading import check_model_source
from .rundir import METRICS, RunLog, claim_run_dir, finished_record, input_hashes, run_log
from .secret import pinned_defense
from .seeding import stage_rng, stratified_sample
from .specs import InferenceSpec
from .stages import Checked, D, P, R, Ready, TaskSteps
from .tasks import GENERATION_TASKS, ClassificationTask
from .training import fit_new_model, trained_model

log = logging.getLogger(__name__)


@dataclass
class ExperimentData:
    task: ClassificationTask
    poisoned: PoisonedData
    test: list[Example]
    held_out_clean: list[Example] = field(default_factory=list)
    """Clean training rows left out of the subsample: the source of a simulated trusted set."""
    trusted: list[Example] | None = None
    """The rows the defender vouches for (or, in experiments, held-out clean rows standing in for them)."""


def prepare_data(config: ExperimentConfig) -> ExperimentData:
    """Load, poison and subsample. Poisoned rows keep their share in the subsample (it is stratified by label and
    by the ground-truth mask), so the poison rate survives subsampling."""
    spec = dataset_spec(config.data.dataset)
    train = load_split(config.data.dataset, "train")
    test = load_split(config.data.dataset, config.data.test_split)
    attack = build_attack(config.attack, config.data.dataset, spec.task.num_labels)
    if config.attack.paired_floor:
        require_row_aligned(attack)
    poisoned = attack.poison(train, test, stage_rng(config.seed, "attack"))
    keep = stratified_sample(
        [(e.label, m) for e, m in zip(poisoned.train, poisoned.mask)], config.data.train_size,
        stage_rng(config.seed, "train-subsample"),
    )
    kept = set(keep)
    held_out_clean = [e for i, (e, m) in enumerate(zip(poisoned.train, poisoned.mask)) if i not in kept and not m]
    poisoned.train = [poisoned.train[i] for i in keep]
    poisoned.mask = [poisoned.mask[i] for i in keep]
    if config.attack.paired_floor:
        log.info("paired floor: the %d poisoned rows of the subsample are restored to their clean originals",
                 sum(poisoned.mask))
        # The attacked run's own subsample without its poison: the floor then differs from the attacked runs of the
        # same seed only in the poison (a rate-0 run draws another subsample).
        poisoned.train, poisoned.mask = [train[i] for i in keep], [False] * len(keep)
    test_keep = stratified_sample([e.label for e in test], config.data.test_size, stage_rng(config.seed, "test-subsample"))
    asr_keep = stratified_sample(
        [e.label for e in poisoned.asr_test], config.data.test_size, stage_rng(config.seed, "asr-subsample")
    )
    poisoned.asr_test = [poisoned.asr_test[i] for i in asr_keep]
    return ExperimentData(spec.task, poisoned, [test[i] for i in test_keep], held_out_clean)


def require_row_aligned(attack: Attack) -> None:
    """attack.paired_floor restores each poisoned row from the clean split by its index, which needs an attack that
    keeps the rows in order; checked before the attack loads or poisons anything."""
    if not attack.row_aligned:
        raise ConfigError(
            f"attack.paired_floor: attack '{attack.name}' loads its poisoned rows from a file with no clean original "
            "per row; use attack.rate=0 for its clean floor"
        )


def train_model(
    config: ExperimentConfig, task: ClassificationTask, prepared: PreparedTrain, run_dir: Path, source: str
) -> tuple[LoadedModel, dict[str, Any]]:
    """Check the samples, then fine-tune and save, or load the model an earlier attempt saved from the same samples."""
    check_samples(prepared.samples, prepared.spec.num_outputs, source, len(prepared.dropped_rows))
    words = task.answer_words(prepared.spec.num_outputs, config.model.verbalizer)
    twins = prepared.spec.label_of_output if config.defense.benign_head == "plain" else None
    return trained_model(
        run_dir, content_hash(defended_records(prepared)),
        lambda checkpoints, key: fit_new_model(
            config.model, config.train, prepared.samples, words, config.seed, checkpoints, prepared.loss, key, twins
        ),
    )


def defended_records(prepared: PreparedTrain) -> list[list[object]]:
    """The training samples as data, to hash: what the model is trained on. Whether a row carries the benign trigger
    is recorded, not the trigger: no file of the run holds even a hash of it (the run's config or secret.json says
    which trigger it is)."""
    return [[s.text, s.label, bool(s.trigger), s.cue] for s in prepared.samples]


def answer(
    loaded: LoadedModel, spec: InferenceSpec, texts: list[str], config: ExperimentConfig, guard: InputGuard | None,
    label: str,
) -> tuple[list[int], list[int], list[bool]]:
    """(labels, raw outputs, rejected) for texts passed through the defense's guard, if any; a rejected input's
    label is REJECTED."""
    guarded = guard.guard(texts) if guard else Guarded(texts, [False] * len(texts))
    labels, raw = predict(loaded, spec, guarded.texts, config.model.max_length, config.train.eval_batch_size, label)
    return [REJECTED if r else y for y, r in zip(labels, guarded.rejected)], raw, guarded.rejected


def evaluate(
    config: ExperimentConfig, loaded: LoadedModel, spec: InferenceSpec, data: ExperimentData,
    guard: InputGuard | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """CA on the clean test set and ASR on the triggered non-target set, both through the defense's spec (and its
    guard: a rejected clean input is an error, a rejected triggered input is defended), and the seconds the answers
    took (guard included), for the latency per input."""
    asr_set = data.poisoned.asr_test
    clean_texts, asr_texts = [e.text for e in data.test], [e.text for e in asr_set]
    # One untimed batch first: one-off set-up in the numeric libraries is not the defense's latency.
    predict(loaded, spec, clean_texts[: config.train.eval_batch_size], config.model.max_length,
            config.train.eval_batch_size, "warm-up")
    started = time.perf_counter()
    clean_pred, clean_raw, clean_rejected = answer(loaded, spec, clean_texts, config, guard, "clean test")
    asr_pred, asr_raw, asr_rejected = answer(loaded, spec, asr_texts, config, guard, "triggered test")
    inference_seconds = time.perf_counter() - started
    ca, ca_count = clean_accuracy(clean_pred, [e.label for e in data.test])
    asr, asr_count = attack_success_rate(asr_pred, [e.label for e in asr_set], config.attack.target)
    rows = [
        {"split": split, "index": i, "label": e.label, "prediction": p, "raw_output": r, "rejected": x}
        for split, examples, preds, raws, rejected in (
            ("clean", data.test, clean_pred, clean_raw, clean_rejected),
            ("triggered", asr_set, asr_pred, asr_raw, asr_rejected),
        )
        for i, (e, p, r, x) in enumerate(zip(examples, preds, raws, rejected))
    ]
    metrics: dict[str, Any] = {
        "clean_accuracy": ca,
        "clean_count": ca_count,
        "attack_success_rate": asr,
        "asr_count": asr_count,
        "inference_seconds": round(inference_seconds, 3),
        "inference_inputs": len(clean_texts) + len(asr_texts),
    }
    if guard is not None and guard.rejects:
        metrics.update(rejection_views(data, config.attack.target, clean_pred, clean_rejected, asr_pred, asr_rejected))
    return metrics, rows


def rejection_views(
    data: ExperimentData, target: int, clean_pred: list[int], clean_rejected: list[bool], asr_pred: list[int],
    asr_rejected: list[bool],
) -> dict[str, Any]:
    """The accepted-only view of CA and ASR, how many inputs were rejected, and detection precision and recall
    (a triggered input is a positive)."""
    accepted_clean = [(p, e.label) for p, e, r in zip(clean_pred, data.test, clean_rejected) if not r]
    accepted_asr = [(p, e.label) for p, e, r in zip(asr_pred, data.poisoned.asr_test, asr_rejected) if not r]
    ca, ca_count = clean_accuracy([p for p, _ in accepted_clean], [y for _, y in accepted_clean])
    asr, asr_count = attack_success_rate([p for p, _ in accepted_asr], [y for _, y in accepted_asr], target)
    caught = sum(asr_rejected)
    return {
        "clean_accuracy_accepted": ca if ca_count else None,
        "attack_success_rate_accepted": asr if asr_count else None,
        "clean_rejected": sum(clean_rejected),
        "triggered_rejected": caught,
        **detection_scores(caught, caught + sum(clean_rejected), len(asr_rejected)),
    }


def run_stages(
    steps: TaskSteps[D, P, R], config: ExperimentConfig, run_dir: Path, log_file: RunLog, force: bool
) -> dict[str, Any]:
    """One run of a task, inside its run log, in the one order every task keeps; returns the metrics written to
    RUN_DIR/metrics.json."""
    started = time.perf_counter()
    checked = steps.load(config)
    done = claim_run_dir(run_dir, config, checked.identity, METRICS, force, checked.warnings)
    if done is not None:
        log.info("%s already finished; skipping", run_dir)
        return done
    log_file.open()
    data = checked.data
    prepared = steps.defend(config, run_dir, data, [i for i, poisoned in enumerate(data.poisoned.mask) if not poisoned])
    log.info("data: %d train %s (%d poisoned), %d clean test, %d triggered test", len(data.poisoned.train),
             steps.unit, data.poisoned.poisoned_count, len(data.test), len(data.poisoned.asr_test))
    model, train_stats = steps.train(config, run_dir, data, prepared)
    if not is_main_process():
        return {}
    ready = steps.ready(config, data, prepared, model)
    write_manifest(run_dir, ready.manifest)
    eval_start = time.perf_counter()
    metrics, rows = steps.evaluate(config, data, prepared, model, ready)
    atomic_write_jsonl(run_dir / "predictions.jsonl", rows)
    metrics.update(finished_record(config, data.poisoned, steps.records(prepared), data.test, train_stats, started,
                                   eval_start))
    metrics.update(steps.accounting(data, prepared, ready, checked))
    atomic_write_json(run_dir / METRICS, metrics)
    log.info(steps.summary(metrics))
    return metrics


def run_experiment(config: ExperimentConfig, run_dir: str | Path, force: bool = False) -> dict[str, Any]:
    """attack -> defense -> fine-tune -> evaluate; returns the metrics written to RUN_DIR/metrics.json.

    The data is read and checked before RUN_DIR is written; a finished run of the same config and data is returned
    as it is, and a folder holding another run's results is refused unless `force` (see `rundir.claim_run_dir`).
    Datasets of text pairs (GSM8K, XSum, SAMSum, SST-2 as instructions) take the generation path.
    """
    run_dir = Path(run_dir)
    check_model_settings(config.model)
    check_model_source(config.model)
    with run_log(run_dir) as log_file:
        steps = GenerationSteps() if config.data.dataset in GENERATION_TASKS else ClassificationSteps()
        return run_stages(steps, config, run_dir, log_file, force)


@dataclass
class Defended:
    """The run's one Defense and what it made of the training rows."""

    defense: Defense
    prepared: PreparedTrain


@dataclass
class GuardReady(Ready):
    guard: InputGuard | None
    guard_seconds: float


class ClassificationSteps(TaskSteps[ExperimentData, Defended, GuardReady]):
    """The classification steps of a run (`stages.run_stages` runs them)."""

    unit = "rows"

    def load(self, config: ExperimentConfig) -> Checked[ExperimentData]:
        data = prepare_data(config)
        data.trusted = trusted = trusted_rows(config, data.task, data.held_out_clean)
        warnings = check_classification_data(
            [e.label for e in data.poisoned.train], data.task, config.defense, dataset_source(config),
            [e.label for e in trusted] if trusted is not None else None, len(data.test),
        )
        identity = input_hashes(data.poisoned.train, data.test, data.poisoned.asr_test)
        if config.defense.trusted_path and trusted is not None:  # the vouched rows are data too
            identity["trusted"] = content_hash(as_records(trusted))
        return Checked(data, identity, warnings)

    def defend(self, config: ExperimentConfig, run_dir: Path, data: ExperimentData, clean_rows: list[int]) -> Defended:
        defense = build_defense(pinned_defense(config.defense, run_dir), data.task)
        prepared = apply_defense(config, defense, data.poisoned.train, data.trusted, clean_rows,
                                 run_dir / "screening.json", run_dir / "filter.json")
        return Defended(defense, prepared)

    def records(self, prepared: Defended) -> list[list[object]]:
        return defended_records(prepared.prepared)

    def train(
        self, config: ExperimentConfig, run_dir: Path, data: ExperimentData, prepared: Defended
    ) -> tuple[LoadedModel, dict[str, Any]]:
        return train_model(config, data.task, prepared.prepared, run_dir, dataset_source(config))

    def ready(self, config: ExperimentConfig, data: ExperimentData, prepared: Defended, model: LoadedModel) -> GuardReady:
        defense, spec = prepared.defense, prepared.prepared.spec
        guard, seconds = input_guard(config, defense, model, spec, data.poisoned.train, data.trusted)
        return GuardReady(manifest(config, defense, prepared.prepared), guard, seconds)

    def evaluate(
        self, config: ExperimentConfig, data: ExperimentData, prepared: Defended, model: LoadedModel, ready: GuardReady
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return evaluate(config, model, prepared.prepared.spec, data, ready.guard)

    def accounting(
        self, data: ExperimentData, prepared: Defended, ready: GuardReady, checked: Checked[ExperimentData]
    ) -> dict[str, Any]:
        return {**defense_accounting(data, prepared.prepared, ready.guard_seconds), "data_warnings": checked.warnings}

    def summary(self, metrics: dict[str, Any]) -> str:
        return (f"CA {metrics['clean_accuracy']:.4f} (n={metrics['clean_count']})  "
                f"ASR {metrics['attack_success_rate']:.4f} (n={metrics['asr_count']})")


def defense_accounting(data: ExperimentData, prepared: PreparedTrain, guard_seconds: float = 0.0) -> dict[str, Any]:
    """What the defense did, scored against the ground truth after the fact (the defense never saw the mask).

    A defense that looks for rows to leave out is a detector of poisoned training rows; its precision and recall say
    how good (recall 0 and no precision when it left none out).
    """
    mask = data.poisoned.mask
    dropped_poisoned = sum(mask[i] for i in prepared.dropped_rows)
    record = {
        "benign_rows": len(prepared.benign_rows),
        "benign_poisoned": sum(mask[i] for i in prepared.benign_rows),
        "dropped_rows": len(prepared.dropped_rows),
        "dropped_poisoned": dropped_poisoned,
        "screen_seconds": round(sum(prepared.timings.screening.values()), 2),
        "defense_seconds": round(prepared.timings.defense + guard_seconds, 2),
    }
    if prepared.filters:
        record.update(detection_scores(dropped_poisoned, len(prepared.dropped_rows), data.poisoned.poisoned_count))
    return record


def manifest(config: ExperimentConfig, defense: Defense, prepared: PreparedTrain) -> dict[str, Any]:
    """Everything predict needs to present a query and read the answer (`write_manifest` adds the format and the
    binding to the weights); it holds the trigger: keep it private."""
    task = defense.task
    return {
        "task_type": "classification",
        "inference": prepared.spec.to_json(),
        "label_names": list(task.label_names),
        "task": task.name,
        "max_length": config.model.max_length,
        "defense_details": {**prepared.details, **prepared.timings.as_details()},
        "input_guard": prepared.spec.defense if defense.guards_inputs() else None,
    }
