"""The generation path of `run_experiment` (math reasoning, summarization, instruction tuning).

attack -> subsample -> P2P (benign trigger, safe prefix on the benign targets) -> fine-tune (loss on the target
tokens) -> greedy generation with the trigger -> strip the prefix -> clean metric and ASR.
The run directory keeps the classification contract: config.yaml, metrics.json, predictions.jsonl, model/,
p2p.json, train.json, log.txt. An output that lacks the safe prefix is scored as generated and counted.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .attacks import GenerationAttack, PoisonedPairs, build_generation_attack
from .config import ExperimentConfig
from .data.generation import load_pairs
from .data.types import TextPair
from .datachecks import check_generation_data, dataset_source
from .defenses import build_generation_defense
from .defenses.generation import PreparedPairs
from .errors import ConfigError
from .inference import generate_texts
from .io import content_hash
from .metrics import HEADLINE_METRIC, text_quality
from .models import LoadedModel
from .prompting import prefix_token_allowance
from .rundir import input_hashes
from .secret import pinned_defense
from .seeding import stage_rng, stratified_sample
from .specs import GenerationSpec
from .stages import Checked, Ready, TaskSteps
from .tasks import GenerationTask, generation_task
from .training import fit_new_generator, trained_model

log = logging.getLogger(__name__)


@dataclass
class GenerationData:
    task: GenerationTask
    attack: GenerationAttack
    poisoned: PoisonedPairs
    test: list[TextPair]


def _random_rows(count: int, size: int | None, rng: random.Random) -> list[int]:
    """Sorted indices of a uniform sample of `size` rows (all rows when size is None): pairs have no label."""
    return stratified_sample([0] * count, size, rng)


def prepare_generation_data(config: ExperimentConfig) -> GenerationData:
    """Load, poison and subsample; the training subsample keeps the poison rate (stratified by the mask)."""
    dataset = config.data.dataset
    if config.data.test_split != "test":
        raise ConfigError(f"generation dataset '{dataset}' has only a 'test' split; set data.test_split: test")
    if config.attack.paired_floor:
        raise ConfigError("attack.paired_floor is for classification attacks; use attack.rate=0 for a generation floor")
    task = generation_task(dataset)
    attack = build_generation_attack(config.attack)
    if attack.dataset not in (None, dataset):
        raise ConfigError(f"attack '{attack.name}' is built for dataset '{attack.dataset}', not '{dataset}'")
    train, test = load_pairs(dataset, "train"), load_pairs(dataset, "test")
    poisoned = attack.poison(train, test, stage_rng(config.seed, "attack"))
    keep = stratified_sample(poisoned.mask, config.data.train_size, stage_rng(config.seed, "train-subsample"))
    poisoned.train = [poisoned.train[i] for i in keep]
    poisoned.mask = [poisoned.mask[i] for i in keep]
    asr_keep = _random_rows(len(poisoned.asr_test), config.data.test_size, stage_rng(config.seed, "asr-subsample"))
    poisoned.asr_test = [poisoned.asr_test[i] for i in asr_keep]
    test_keep = _random_rows(len(test), config.data.test_size, stage_rng(config.seed, "test-subsample"))
    return GenerationData(task, attack, poisoned, [test[i] for i in test_keep])


def _generate(
    config: ExperimentConfig, loaded: LoadedModel, spec: GenerationSpec, template: str, rows: list[TextPair],
    max_new_tokens: int, label: str,
) -> tuple[list[str], list[str], list[bool]]:
    """(raw outputs, outputs with the safe prefix stripped, whether each had the prefix)."""
    raw = generate_texts(
        loaded, [spec.present(r.source) for r in rows], template, config.model.max_length, max_new_tokens,
        config.train.eval_batch_size, label,
    )
    stripped = [spec.strip(output) for output in raw]
    return raw, [text for text, _ in stripped], [had for _, had in stripped]


def generation_budget(config: ExperimentConfig, loaded: LoadedModel, spec: GenerationSpec) -> int:
    """The tokens generated per output: `model.max_new_tokens`, plus room for the safe prefix when P2P adds one."""
    allowance = prefix_token_allowance(loaded.tokenizer, spec.output_prefix, loaded.frame)
    budget = config.model.max_new_tokens + allowance
    if budget >= config.model.max_length:
        raise ConfigError(
            f"model.max_new_tokens {config.model.max_new_tokens} plus {allowance} tokens for the safe prefix leave no "
            f"room for the prompt within model.max_length {config.model.max_length}; raise max_length"
        )
    return budget


def evaluate_generation(
    config: ExperimentConfig, loaded: LoadedModel, spec: GenerationSpec, data: GenerationData, max_new_tokens: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The task's clean metric on the clean test set and the attack's ASR on the triggered set, both generated
    through the defense's spec; outputs without the safe prefix are counted per set. The attack's side signals are
    rated on both sets: on clean inputs they show a backdoor that fires without its trigger."""
    template, attack = data.task.template, data.attack
    clean_raw, clean_out, clean_had = _generate(config, loaded, spec, template, data.test, max_new_tokens, "clean test")
    asr_rows = data.poisoned.asr_test
    asr_raw, asr_out, asr_had = _generate(config, loaded, spec, template, asr_rows, max_new_tokens, "triggered test")
    success = [attack.succeeded(output, row) for output, row in zip(asr_out, asr_rows)]
    quality = text_quality(data.task.metric, clean_out, [r.target for r in data.test])
    headline = HEADLINE_METRIC[data.task.metric]
    metrics: dict[str, Any] = {
        "task_type": "generation",
        "clean_metric": headline,
        "clean_score": quality[headline],
        "clean_count": len(data.test),
        **quality,
        "attack_success_rate": sum(success) / len(success) if success else float("nan"),
        "asr_count": len(success),
        "missing_prefix_clean": clean_had.count(False),
        "missing_prefix_triggered": asr_had.count(False),
    }
    for suffix, outputs in (("", asr_out), ("_clean", clean_out)):
        signals = [attack.side_signals(output) for output in outputs]
        for name in signals[0] if signals else {}:
            metrics[f"{name}_rate{suffix}"] = sum(s[name] for s in signals) / len(signals)
    rows = [
        {"split": "clean", "index": i, "reference": r.target, "output": o, "raw_output": raw, "had_prefix": had}
        for i, (r, o, raw, had) in enumerate(zip(data.test, clean_out, clean_raw, clean_had))
    ] + [
        {"split": "triggered", "index": i, "attack_target": r.target, "output": o, "raw_output": raw,
         "had_prefix": had, "attack_succeeded": ok}
        for i, (r, o, raw, had, ok) in enumerate(zip(asr_rows, asr_out, asr_raw, asr_had, success))
    ]
    return metrics, rows


def generation_manifest(
    config: ExperimentConfig, task: GenerationTask, spec: GenerationSpec, max_new_tokens: int
) -> dict[str, Any]:
    """How to present a query to the saved generator and read its output; it holds the trigger: keep it private.
    `max_new_tokens` is the budget the evaluation used, safe prefix included (`write_manifest` adds the format and
    the binding to the weights)."""
    return {
        "task_type": "generation",
        "task": task.name,
        "template": task.template,
        "generation": spec.to_json(),
        "max_length": config.model.max_length,
        "max_new_tokens": max_new_tokens,
    }


@dataclass
class BudgetReady(Ready):
    budget: int
    """Tokens generated per output, the safe prefix included."""


class GenerationSteps(TaskSteps[GenerationData, PreparedPairs, BudgetReady]):
    """The generation steps of a run (`stages.run_stages` runs them)."""

    unit = "pairs"

    def load(self, config: ExperimentConfig) -> Checked[GenerationData]:
        data = prepare_generation_data(config)
        check_generation_data(len(data.poisoned.train), len(data.test), config.defense, dataset_source(config))
        return Checked(data, input_hashes(data.poisoned.train, data.test, data.poisoned.asr_test))

    def defend(
        self, config: ExperimentConfig, run_dir: Path, data: GenerationData, clean_rows: list[int]
    ) -> PreparedPairs:
        defense = build_generation_defense(pinned_defense(config.defense, run_dir))
        return defense.prepare(data.poisoned.train, stage_rng(config.seed, "defense"), clean_rows)

    def records(self, prepared: PreparedPairs) -> list[list[object]]:
        return [[s.source, s.target, bool(s.trigger), s.cue] for s in prepared.samples]  # no hash of the trigger

    def train(
        self, config: ExperimentConfig, run_dir: Path, data: GenerationData, prepared: PreparedPairs
    ) -> tuple[LoadedModel, dict[str, Any]]:
        return trained_model(
            run_dir, content_hash(self.records(prepared)),
            lambda checkpoints, key: fit_new_generator(
                config.model, config.train, prepared.samples, data.task.template, config.seed, checkpoints,
                prepared.spec.output_prefix, key,
            ),
        )

    def ready(
        self, config: ExperimentConfig, data: GenerationData, prepared: PreparedPairs, model: LoadedModel
    ) -> BudgetReady:
        budget = generation_budget(config, model, prepared.spec)
        return BudgetReady(generation_manifest(config, data.task, prepared.spec, budget), budget)

    def evaluate(
        self, config: ExperimentConfig, data: GenerationData, prepared: PreparedPairs, model: LoadedModel,
        ready: BudgetReady,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return evaluate_generation(config, model, prepared.spec, data, ready.budget)

    def accounting(
        self, data: GenerationData, prepared: PreparedPairs, ready: BudgetReady, checked: Checked[GenerationData]
    ) -> dict[str, Any]:
        mask = data.poisoned.mask
        return {"benign_rows": len(prepared.benign_rows), "benign_poisoned": sum(mask[i] for i in prepared.benign_rows),
                "dropped_rows": len(prepared.dropped_rows),
                "dropped_poisoned": sum(mask[i] for i in prepared.dropped_rows),
                "confirmed_triggers": prepared.confirmed}

    def summary(self, metrics: dict[str, Any]) -> str:
        return (f"{metrics['clean_metric']} {metrics['clean_score']:.4f} (n={metrics['clean_count']})  "
                f"ASR {metrics['attack_success_rate']:.4f} (n={metrics['asr_count']})  missing prefix: "
                f"{metrics['missing_prefix_clean']} clean, {metrics['missing_prefix_triggered']} triggered")
