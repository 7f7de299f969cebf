"""Running a defense: what it asks for before training (screening, a reference model, the trusted rows, decided
here) and its inference-time guard after.

Screening is cached: in the run's folder and, with $P2P_CACHE_DIR, under a hash of everything it depends on, so that
runs that screen the same data the same way compute it once.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ..config import DefenseConfig, ExperimentConfig, ModelConfig, TrainConfig
from ..data.catalog import read_user_data
from ..data.types import Example, as_records
from ..distributed import is_main_process
from ..errors import ConfigError
from ..inference import embed_samples, label_probabilities, perplexities
from ..io import atomic_write_json, content_hash, read_json
from ..models import LoadedModel
from ..prompting import Sample
from ..seeding import stage_rng, stratified_sample
from ..specs import InferenceSpec, plain_spec
from ..tasks import ClassificationTask
from ..training import fit_language_model, fit_throwaway_model
from . import Defense, DefenseContext, GuardContext, PreparedTrain, Reference
from .base import DefenseTimings, InputGuard, Perplexity
from .screening import SCREENING_VERSION, screen_rows

log = logging.getLogger(__name__)


def apply_defense(
    config: ExperimentConfig,
    defense: Defense,
    train: list[Example],
    trusted: list[Example] | None,
    clean_rows: list[int] | None = None,
    screening_path: Path | None = None,
    filter_path: Path | None = None,
) -> PreparedTrain:
    """Run the run's one `defense` (built with its pinned trigger) on `train`; `config` gives the model, training
    and seed its reference fine-tunes use. `trusted` are the rows the defender vouches for (`trusted_rows`), and
    `clean_rows` (the ground truth) reaches the defense only for the oracle experiment.

    Screening, when asked for, runs here; with `screening_path` its result is saved there and reused on resume.
    A reference fine-tune (BKI, CUBE) runs here too; its time, with the defense's own, is `defense_seconds`. With
    `filter_path` the rows such a filter left out are saved there, so a resumed run trains on the same rows without
    fitting the reference again.
    """
    settings, task = defense.config, defense.task
    context = DefenseContext(trusted=trusted)
    if defense.needs_clean and not context.trusted:
        raise ConfigError(f"defense '{defense.name}' needs clean rows: set defense.trusted_path (or, in experiments, "
                          f"defense.trusted_size)")
    if settings.has_benign_subset and settings.source == "oracle":
        if clean_rows is None:
            raise ConfigError("defense.source 'oracle' needs a simulated attack's ground truth; use 'random' or 'trusted'")
        context.oracle_pool = clean_rows
    timings = DefenseTimings()
    if settings.has_benign_subset and settings.screen:
        context.suspicion, timings.screening = screened_suspicion(config, task, train, screening_path)
    started = time.perf_counter()
    saved = None
    if defense.needs_reference:
        key = content_hash([as_records(train), config.config_hash()])
        saved = _read_keyed(filter_path, key)
        context.reference = reference_views(config, task, train)  # fitted only if the filter asks for it
        context.filtered = (saved["dropped_rows"], saved["found"]) if saved else None
    prepared = defense.prepare(train, stage_rng(config.seed, "defense"), context)
    timings.defense = saved["defense_seconds"] if saved else round(time.perf_counter() - started, 2)
    if defense.needs_reference and filter_path and not saved and is_main_process():
        atomic_write_json(filter_path, {"key": key, "dropped_rows": prepared.dropped_rows,
                                        "found": dict(prepared.details), "defense_seconds": timings.defense})
    prepared.timings = timings
    return prepared


def trusted_rows(
    config: ExperimentConfig, task: ClassificationTask, held_out_clean: list[Example] | None = None
) -> list[Example] | None:
    """The rows the defender vouches for, decided here and nowhere else: those in `defense.trusted_path`, or, in
    experiments (given the clean rows held out of the subsample), `defense.trusted_size` of them standing in."""
    if config.defense.trusted_path:
        return read_user_data(config.defense.trusted_path, known_names=task.label_names).examples
    if held_out_clean is None:
        return None
    return simulated_trusted_set(config, held_out_clean)


def simulated_trusted_set(config: ExperimentConfig, held_out_clean: list[Example]) -> list[Example] | None:
    """For experiments: `defense.trusted_size` clean training rows outside the subsample, stratified by label,
    standing in for a set the defender vouches for."""
    size = config.defense.trusted_size
    if size is None:
        return None
    if size > len(held_out_clean):
        raise ConfigError(
            f"defense.trusted_size {size} exceeds the {len(held_out_clean)} clean rows left outside the subsample"
        )
    keep = stratified_sample([e.label for e in held_out_clean], size, stage_rng(config.seed, "trusted"))
    return [held_out_clean[i] for i in keep]


def reference_views(config: ExperimentConfig, task: ClassificationTask, train: list[Example]) -> Reference:
    """A model fine-tuned on the rows as given, with the run's own model and training settings, when first used."""
    words = task.answer_words(task.num_labels, config.model.verbalizer)

    @functools.cache
    def loaded() -> LoadedModel:
        samples = [Sample(e.text, e.label) for e in train]
        return fit_throwaway_model(config.model, config.train, samples, words, config.seed)

    spec = plain_spec("reference", task.num_labels)
    length, batch = config.model.max_length, config.train.eval_batch_size
    return Reference(
        probabilities=lambda texts: label_probabilities(loaded(), spec, texts, length, batch, "reference"),
        embeddings=lambda texts: embed_samples(loaded(), [spec.present(t) for t in texts], length, batch, "embed"),
    )


def input_guard(
    config: ExperimentConfig, defense: Defense, loaded: LoadedModel, spec: InferenceSpec,
    train: list[Example], clean: list[Example] | None,
) -> tuple[InputGuard | None, float]:
    """The defense's inference-time part (ONION, STRIP), built on the trained model, and the seconds that took
    (a language model fitted for ONION included)."""
    if not defense.guards_inputs():
        return None, 0.0
    started = time.perf_counter()
    length, batch = config.model.max_length, config.train.eval_batch_size
    context = GuardContext(
        probabilities=lambda texts: label_probabilities(loaded, spec, texts, length, batch, "guard"),
        clean=list(clean or []), rng=stage_rng(config.seed, "guard"),
    )
    if defense.needs_language_model:
        context.perplexity = language_model_perplexity(config, [e.text for e in train])
    guard = defense.input_guard(context)
    return guard, round(time.perf_counter() - started, 2)


def language_model_perplexity(config: ExperimentConfig, texts: list[str]) -> Perplexity:
    """ONION's scorer: `defense.onion_model` fitted to the training texts for `defense.onion_epochs`."""
    d = config.defense.settings
    model_config = ModelConfig(name=d.onion_model, max_length=config.model.max_length)
    train_config = None  # onion_epochs 0: a pretrained LM as it is
    if d.onion_epochs > 0:
        train_config = TrainConfig(epochs=d.onion_epochs, batch_size=config.train.batch_size,
                                   learning_rate=d.onion_learning_rate, save_steps=config.train.save_steps)
    with tempfile.TemporaryDirectory(prefix="p2p-onion-lm-") as tmp:
        lm = fit_language_model(model_config, train_config, texts, config.seed, Path(tmp))
    return lambda batch: perplexities(lm, batch, model_config.max_length, config.train.eval_batch_size)


SCREEN_CACHE_ENV = "P2P_CACHE_DIR"
SCREEN_FIELDS = ("screen", "skip_reference_when_confirmed", "screen_model", "screen_epochs", "screen_learning_rate", "screen_min_count", "judge_model")


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
    found = {place: _read_keyed(place, key) for place in places}
    saved = next((s for s in found.values() if s is not None), None)
    if saved is None:
        suspicion, seconds = screen_rows(config, task, train)
        saved = {"key": key, "suspicion": [round(float(v), 6) for v in suspicion], "seconds": seconds}
    if is_main_process():
        for place in (p for p, s in found.items() if s is None):
            atomic_write_json(place, saved)
    return saved["suspicion"], saved["seconds"]


def _read_keyed(place: Path | None, key: str) -> dict[str, Any] | None:
    """A saved result (screening, filter) if it was computed for exactly this input (`key`)."""
    if place is None or not place.is_file():
        return None
    saved = read_json(place)
    if saved.get("key") != key:
        return None
    log.info("already computed; reading %s", place)
    return saved


def left_out_records(
    train: list[Example], prepared: PreparedTrain, config: DefenseConfig, label_names: tuple[str, ...] | None,
) -> list[dict[str, Any]]:
    """One record per training row the defense left out, and why: a user's row is never dropped unseen. `row` counts
    the data's records from 1 (a header line is not a record)."""
    used = [signal for signal in config.screen if signal in prepared.timings.screening] or config.screen
    ranked = f"among the most suspicious {config.drop_suspicious:.0%} of rows (screening: {', '.join(used)})"
    records = []
    for i in prepared.dropped_rows:
        row = train[i]
        reason = prepared.dropped_because.get(i) or (ranked if config.drop_suspicious else f"left out by {config.name}")
        label = label_names[row.label] if label_names else row.label
        records.append({"row": i + 1, "text": row.text, "label": label, "reason": reason})
    return records
