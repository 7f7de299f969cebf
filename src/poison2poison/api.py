"""The short Python API: defend your own labelled data, then load the defended model and predict.

    from poison2poison import defend, DefendedModel
    defend("my_train.jsonl", model="minilm", out="defended/")
    model = DefendedModel.load("defended/")
    model.predict(["a gripping, well acted film"])   # -> ["positive"] (label names)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

from .config import ExperimentConfig, load_config
from .data.catalog import read_user_data
from .data.readers import Fields, LabelledRows
from .data.types import as_records
from .datachecks import check_classification_data
from .defending import apply_defense, vouched_rows
from .defenses import InferenceSpec, build_defense
from .errors import ConfigError, ModelSetupError
from .inference import predict
from .io import atomic_write_json, content_hash, read_json
from .models import LoadedModel, load_saved_model
from .models.loading import check_model_source
from .pipeline import manifest, train_model
from .rundir import MANIFEST, claim_run_dir, run_log, with_pinned_secret
from .tasks import TASKS, ClassificationTask, generic_task

log = logging.getLogger(__name__)

DEFAULT_DEFENSE = "defense.name=p2p+"
"""What `defend` applies when no config names a defense: robust P2P (docs/robust.md)."""


def named_task(task: str) -> ClassificationTask:
    if task not in TASKS:
        raise ConfigError(f"unknown task '{task}'; valid: {', '.join(sorted(TASKS))} (or leave it out for numeric labels)")
    return TASKS[task]


def task_for(rows: LabelledRows) -> ClassificationTask:
    """The task of data without a named task: its label names where the file wrote names, else numeric labels
    0..max (a gap among them is the data check's to report)."""
    if rows.label_names is not None:
        return generic_task(len(rows.label_names), rows.label_names)
    return generic_task(max(e.label for e in rows.examples) + 1)


def defend(
    data: str | Path,
    model: str,
    out: str | Path,
    config: ExperimentConfig | None = None,
    task: str | None = None,
    force: bool = False,
    fields: Fields = Fields(),
) -> Path:
    """Fine-tune `model` on the user's labelled data with P2P and save the defended model and its manifest.

    `data` is a file (.jsonl, .json, .csv, .tsv, .txt, .parquet) or `hub:ID[:SPLIT]`; `fields` names its text and
    label fields, and labels may be integers or names (kept in the manifest's `label_names`). `config` supplies the
    defense and training settings (default: robust P2P, `p2p+`, see docs/robust.md). The data is read and checked
    before `out` is written. The folder holds model/, p2p.json (with the trigger: keep it private), config.yaml,
    run.json and log.txt, and secret.json for a 'secret' trigger without a seed, so that an interrupted run
    resumes with it. A folder holding a model of other data or settings is refused unless `force`; the same data
    and settings again find the model made.
    """
    out = Path(out)
    config = config or load_config(None, [DEFAULT_DEFENSE])
    config = config.with_model(model)
    check_model_source(config.model)
    if config.defense.has_benign_subset and config.defense.source == "oracle":
        raise ConfigError("defense.source 'oracle' is an experiment on simulated attacks; use 'random' or 'trusted'")
    named = named_task(task) if task is not None else None
    with run_log(out) as log_file:
        rows = read_user_data(data, fields, named.label_names if named else None)
        chosen_task = named or task_for(rows)
        if build_defense(config.defense, chosen_task).guards_inputs:
            raise ConfigError(f"defense '{config.defense.name}' acts at inference and is offered as a benchmark "
                              f"baseline (`p2p run`, `p2p bench`); `defend` saves models of training-time defenses")
        trusted = vouched_rows(config, chosen_task)
        warnings = check_classification_data(
            [e.label for e in rows.examples], chosen_task, config.defense, str(data),
            [e.label for e in trusted] if trusted is not None else None,
        )
        identity = {"train": content_hash([as_records(rows.examples), chosen_task.name, list(chosen_task.label_names)])}
        if trusted is not None:
            identity["trusted"] = content_hash(as_records(trusted))
        if claim_run_dir(out, config, identity, MANIFEST, force, warnings) is not None:
            log.info("%s already holds the model defended on this data with these settings", out)
            return out
        log_file.open()
        started = time.perf_counter()
        prepared = apply_defense(
            with_pinned_secret(config, out), chosen_task, rows.examples, trusted=trusted,
            screening_path=out / "screening.json", filter_path=out / "filter.json",
        )
        train_model(config, chosen_task, prepared, out, str(data))
        atomic_write_json(out / MANIFEST, manifest(config, chosen_task, prepared))
        log.info("defended model saved to %s in %.0f s", out, time.perf_counter() - started)
    return out


class DefendedModel:
    """A saved model with its manifest: every query gets the defense's trigger and projection, always."""

    def __init__(self, loaded: LoadedModel, spec: InferenceSpec, label_names: list[str], max_length: int) -> None:
        if loaded.num_outputs != spec.num_outputs:
            raise ModelSetupError(
                f"the model has {loaded.num_outputs} outputs but its manifest maps {spec.num_outputs}"
            )
        self.loaded, self.spec, self.label_names, self.max_length = loaded, spec, label_names, max_length

    @classmethod
    def load(cls, directory: str | Path) -> "DefendedModel":
        directory = Path(directory)
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise ModelSetupError(f"{directory}: no {MANIFEST}; point at a folder written by `p2p defend` or `p2p run`")
        data = read_json(manifest_path)
        if data.get("input_guard"):
            raise ModelSetupError(
                f"{directory} was defended by {data['input_guard']}, which acts at inference; its model alone is not "
                f"defended. Benchmark runs of inference-time defenses are not served by DefendedModel or `p2p predict`"
            )
        if data.get("task_type") == "generation":
            raise ModelSetupError(
                f"{directory} holds a generator; DefendedModel and `p2p predict` serve classifiers. Load "
                f"{directory / 'model'} with transformers and apply the trigger and prefix in {MANIFEST}"
            )
        return cls(
            load_saved_model(directory / "model"), InferenceSpec.from_json(data["inference"]),
            list(data["label_names"]), int(data["max_length"]),
        )

    def predict_ids(self, texts: Sequence[str], batch_size: int = 64) -> list[int]:
        return predict(self.loaded, self.spec, list(texts), self.max_length, batch_size)[0]

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[str]:
        return [self.label_names[i] for i in self.predict_ids(texts, batch_size)]
