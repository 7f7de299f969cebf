"""The short Python API: defend your own labelled data, then load the defended model and predict.

    from poison2poison import defend, DefendedModel
    defend("my_train.jsonl", model="minilm", out="defended/")   # p2p+ with a secret trigger
    model = DefendedModel.load("defended/")
    model.predict(["a gripping, well acted film"])   # -> ["positive"] (label names)

A generator made by `p2p run` on a generation dataset is loaded with `DefendedGenerator.load(run_dir)`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .config import ExperimentConfig, load_config
from .data.catalog import read_user_data
from .data.readers import Fields, LabelledRows
from .data.types import as_records
from .datachecks import check_classification_data
from .defenses import build_defense, defense_class
from .defenses.runner import apply_defense, left_out_records, trusted_rows
from .errors import ConfigError, ModelSetupError
from .inference import generate_texts, predict
from .io import atomic_write_jsonl, content_hash
from .manifest import (
    ClassifierManifest,
    GeneratorManifest,
    classifier_manifest,
    generator_manifest,
    read_manifest,
    write_manifest,
)
from .models import LoadedModel, load_saved_model
from .models.loading import check_model_source
from .pipeline import manifest, train_model
from .prompting import prefix_token_allowance
from .rundir import MANIFEST, claim_run_dir, run_log
from .secret import pinned_defense
from .specs import GenerationSpec, InferenceSpec
from .tasks import TASKS, ClassificationTask, generic_task

log = logging.getLogger(__name__)

DEFAULT_DEFENSE = "defense.name=p2p+"
"""What `defend` applies when no config names a defense: robust P2P (docs/robust.md)."""
LEFT_OUT = "left_out.jsonl"
"""In a defended model's folder: the user's rows the defense left out of training, each with why."""
DEFAULT_TRIGGER = "secret"
"""What `defend` uses when no config names a trigger: the published one lets an attacker who knows P2P plant a
backdoor that fires through it (docs/security.md)."""


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
    defense and training settings (default: robust P2P, `p2p+`, see docs/robust.md), and the trigger is a secret one
    unless it names one. The data is read and checked before `out` is written. The folder (owner-only when the
    trigger is private) holds model/, p2p.json (with the trigger: keep it private), config.yaml, run.json and
    log.txt, and secret.json for a 'secret' trigger without a seed, so that an interrupted run resumes with it. A
    folder holding a model of other data or settings is refused unless `force`; the same data and settings again
    find the model made. Rows the defense leaves out of training are listed, each with why, in left_out.jsonl.
    """
    out = Path(out)
    config = with_default_trigger(config or load_config(None, [DEFAULT_DEFENSE]))
    config = config.with_model(model)
    check_model_source(config.model)
    if config.defense.has_benign_subset and config.defense.source == "oracle":
        raise ConfigError("defense.source 'oracle' is an experiment on simulated attacks; use 'random' or 'trusted'")
    named = named_task(task) if task is not None else None
    with run_log(out) as log_file:
        rows = read_user_data(data, fields, named.label_names if named else None)
        chosen_task = named or task_for(rows)
        if defense_class(config.defense.name).guards_inputs():
            raise ConfigError(f"defense '{config.defense.name}' acts at inference and is offered as a benchmark "
                              f"baseline (`p2p run`, `p2p bench`); `defend` saves models of training-time defenses")
        trusted = trusted_rows(config, chosen_task)
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
        defense = build_defense(pinned_defense(config.defense, out), chosen_task)
        prepared = apply_defense(
            config, defense, rows.examples, trusted, screening_path=out / "screening.json",
            filter_path=out / "filter.json",
        )
        if prepared.dropped_rows:
            atomic_write_jsonl(out / LEFT_OUT, left_out_records(rows.examples, prepared, config.defense, rows.label_names))
            log.info("%d of %d rows left out of training; %s lists them and why", len(prepared.dropped_rows),
                     len(rows.examples), LEFT_OUT)
        train_model(config, chosen_task, prepared, out, str(data))
        write_manifest(out, manifest(config, defense, prepared))
        log.info("defended model saved to %s in %.0f s", out, time.perf_counter() - started)
    return out


def with_default_trigger(config: ExperimentConfig) -> ExperimentConfig:
    """The config with a secret trigger unless it names one; a named published or seeded trigger is warned about.
    Defenses without a trigger are left as they are."""
    defense = config.defense
    if not defense.has_benign_subset:
        return config
    if "trigger" not in defense.model_fields_set:
        return config.model_copy(update={"defense": defense.model_copy(update={"trigger": DEFAULT_TRIGGER})})
    if defense.trigger == "official":
        log.warning("defense.trigger is 'official', the published trigger: an attacker who knows P2P can plant a "
                    "backdoor that fires through it (docs/security.md)")
    elif defense.trigger == "secret" and defense.secret_seed is not None:
        log.warning("defense.secret_seed pins the trigger: anyone with config.yaml has it; for experiments only")
    return config


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
        """The model and its manifest, once the manifest is valid and bound to these weights (manifest.py)."""
        manifest = cls.manifest(directory)
        return cls(load_saved_model(Path(directory) / "model"), manifest.spec, manifest.label_names,
                   manifest.max_length)

    @staticmethod
    def manifest(directory: str | Path) -> ClassifierManifest:
        """The validated manifest of a classifier this class can serve, checked against its weights without loading
        them."""
        directory = Path(directory)
        data = read_manifest(directory)
        if data.get("input_guard"):
            raise ModelSetupError(
                f"{directory} was defended by {data['input_guard']}, which acts at inference; its model alone is not "
                f"defended. Benchmark runs of inference-time defenses are not served by DefendedModel or `p2p predict`"
            )
        if data.get("task_type") == "generation":
            raise ModelSetupError(
                f"{directory} holds a generator; DefendedModel and `p2p predict` serve classifiers. Load it with "
                f"DefendedGenerator, or serve it with `p2p serve`"
            )
        return classifier_manifest(directory, data)

    def predict_ids(self, texts: Sequence[str], batch_size: int = 64) -> list[int]:
        return predict(self.loaded, self.spec, list(texts), self.max_length, batch_size)[0]

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[str]:
        return [self.label_names[i] for i in self.predict_ids(texts, batch_size)]


@dataclass(frozen=True)
class GeneratedText:
    text: str
    """The answer, with the safe prefix stripped."""
    had_prefix: bool
    """False: the model left the benign context for this prompt, and `text` is the output as generated."""


class DefendedGenerator:
    """A saved generator with its manifest: every prompt gets the defense's trigger and cue, and the safe prefix is
    stripped from every output, always (the generation counterpart of DefendedModel)."""

    def __init__(self, loaded: LoadedModel, spec: GenerationSpec, template: str, max_length: int,
                 max_new_tokens: int) -> None:
        self.loaded, self.spec, self.template, self.max_length = loaded, spec, template, max_length
        self.prefix_tokens = prefix_token_allowance(loaded.tokenizer, spec.output_prefix, loaded.frame)
        self.answer_tokens = max_new_tokens - self.prefix_tokens
        """The longest answer, in tokens after the safe prefix: the budget the run evaluated with."""

    @classmethod
    def load(cls, directory: str | Path) -> "DefendedGenerator":
        """The model and its manifest, once the manifest is valid and bound to these weights (manifest.py)."""
        manifest = cls.manifest(directory)
        return cls(load_saved_model(Path(directory) / "model"), manifest.spec, manifest.template,
                   manifest.max_length, manifest.max_new_tokens)

    @staticmethod
    def manifest(directory: str | Path) -> GeneratorManifest:
        """The validated manifest of a generator, checked against its weights without loading them."""
        directory = Path(directory)
        data = read_manifest(directory)
        if data.get("task_type") != "generation":
            raise ModelSetupError(f"{directory} holds a classifier; load it with DefendedModel")
        return generator_manifest(directory, data)

    def generate_checked(
        self, sources: Sequence[str], max_new_tokens: int | None = None, batch_size: int = 16
    ) -> list[GeneratedText]:
        """Greedy answers of at most `max_new_tokens` tokens (default and cap: `answer_tokens`), each saying whether
        the model kept the safe prefix."""
        tokens = self.answer_tokens if max_new_tokens is None else max_new_tokens
        if not 1 <= tokens <= self.answer_tokens:
            raise ConfigError(f"max_new_tokens {tokens}: this model answers with 1 to {self.answer_tokens} tokens")
        outputs = generate_texts(self.loaded, [self.spec.present(s) for s in sources], self.template, self.max_length,
                                 tokens + self.prefix_tokens, batch_size)
        return [GeneratedText(*self.spec.strip(output)) for output in outputs]

    def generate(self, sources: Sequence[str], max_new_tokens: int | None = None, batch_size: int = 16) -> list[str]:
        return [g.text for g in self.generate_checked(sources, max_new_tokens, batch_size)]
