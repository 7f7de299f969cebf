"""Typed experiment configuration: YAML in, validated pydantic models, resolved YAML out."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, one_line, validation_problems
from .io import content_hash
from .tasks import GENERATION_TASKS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    dataset: str = "sst2"
    train_size: int | None = Field(None, gt=0, description="stratified subsample of the training split")
    test_size: int | None = Field(None, gt=0, description="stratified subsample of the clean test split")
    test_split: Literal["test", "dev"] = "test"


class MethodSettings(_Strict):
    """A method's own settings: a class beside the method's code (its `Settings`), written flat in the method's
    config section (`defense: {name: strip, strip_copies: 20}`) and checked against the method the section names."""

    benign_subset: ClassVar[bool] = False
    """The method trains a triggered subset of the data (P2P and kin): the section's subset fields apply to it."""
    section_defaults: ClassVar[dict[str, Any]] = {}
    """Values the method gives the section's shared fields unless the config sets them (p2p+'s robust options)."""


class NoSettings(MethodSettings):
    """A method with no settings of its own."""


_REGISTRIES: dict[str, list[Mapping[str, Any]]] = {"attack": [], "defense": []}


def bind_registry(section: Literal["attack", "defense"], registry: Mapping[str, Any]) -> None:
    """Let a section find its methods' settings in a registry of method classes (each with a `Settings` class); the
    registries bind themselves when imported, and what is added to them later is found too."""
    _REGISTRIES[section].append(registry)


def method_settings(section: str, name: str) -> type[MethodSettings] | None:
    """The settings class of the method a section names; None for a name no registry knows (the builders say so)."""
    for registry in _REGISTRIES[section]:
        if name in registry:
            return registry[name].Settings
    return None


def trains_benign_subset(defense: str) -> bool:
    settings = method_settings("defense", defense)
    return settings is not None and settings.benign_subset


class _MethodSection(BaseModel):
    """A config section that names a method: its shared fields, then the method's own settings as extra keys."""

    model_config = ConfigDict(extra="allow")
    section: ClassVar[str]
    name: str

    @model_validator(mode="after")
    def _method_settings(self) -> "_MethodSection":
        settings = method_settings(self.section, self.name)
        if settings is None:
            return self  # an unknown method: building it names the known ones
        for key, value in settings.section_defaults.items():
            if key not in self.model_fields_set:
                setattr(self, key, copy.deepcopy(value))
        given = dict(self.model_extra or {})
        try:
            validated = settings.model_validate(given)
        except ValidationError as exc:
            raise ValueError(self._settings_problems(exc, settings)) from None
        self.__pydantic_extra__ = validated.model_dump(mode="json")  # written in full, as every other field
        return self

    def _settings_problems(self, exc: ValidationError, settings: type[MethodSettings]) -> str:
        known = ", ".join(settings.model_fields) or "none"
        problems = []
        for e in exc.errors():
            field = ".".join(map(str, e["loc"]))
            if e["type"] == "extra_forbidden":
                problems.append(f"'{field}' is not a setting of {self.section} '{self.name}' (its own settings: {known})")
            else:
                problems.append(f"setting '{field}': {e['msg'].removeprefix('Value error, ')}")
        return "; ".join(problems)

    @property
    def settings(self) -> Any:
        """The named method's own settings, typed by its `Settings` class."""
        settings = method_settings(self.section, self.name) or NoSettings
        return settings.model_validate(self.model_extra or {})


class AttackConfig(_MethodSection):
    """The attack: what every attack shares; an attack's own settings (BadNets' `triggers`, ...) sit beside its
    code (attacks/*.py)."""

    section = "attack"
    name: str = "badnets"
    rate: float = Field(0.02, ge=0.0, le=1.0, description="poisoned fraction of the training set; 0 = clean model")
    target: int = Field(1, ge=0)
    label_mode: Literal["dirty", "clean"] = "dirty"
    paired_floor: bool = Field(
        False, description="train on the attacked subsample with each poisoned row restored to its clean original: "
        "the clean floor paired row by row with the attacked runs of the same seed (docs/robust.md)",
    )


class DefenseConfig(_MethodSection):
    """The defense: the benign subset and its screening, shared by P2P and its kin; a defense's own settings
    (STRIP's `strip_copies`, ...) sit beside its code (defenses/*.py)."""

    section = "defense"
    name: str = "none"
    rho: float = Field(0.2, gt=0.0, le=1.0)
    source: Literal["random", "trusted", "oracle"] = "random"
    trusted_path: str | None = None
    trigger: str = Field(
        "official", description="'official' (the paper's published trigger: what `p2p run` reproduces), 'secret' (a "
        "random one of at least 128 bits per run: what `p2p defend` draws unless told) or a literal trigger text",
    )
    secret_seed: int | None = Field(
        None, description="pins the 'secret' trigger, for reproducible experiments: config.yaml then gives it away"
    )
    separate_cue: bool = True
    mode: Literal["replace", "append"] = "replace"
    output_prefix: str = Field(
        "Safe answer: ", min_length=1, description="generation: the safe prefix on benign targets, stripped at inference"
    )
    trusted_size: int | None = Field(
        None, gt=0, description="experiments: simulate a vouched set of this many clean held-out training rows"
    )
    # Robust P2P (ours, beyond the paper). The defaults reproduce the paper.
    screen: list[Literal["lexical", "reference", "judge"]] = Field(
        default_factory=list,
        description="signals that score each row's suspicion: label-pure n-grams, a short reference fine-tune, a "
        "pretrained instruct LLM's zero-shot doubt of each label",
    )
    skip_reference_when_confirmed: bool = Field(
        False, description="leave the `reference` signal out where trigger confirmation finds a trigger: the poison "
        "is then words or a sentence, which the other signals rank and confirmation drops (docs/robust.md)",
    )
    judge_model: str = Field("smollm2", description="the instruct LLM that judges each row's label zero-shot")
    screen_model: str | None = Field(None, description="reference model; default: model.name")
    screen_epochs: float = Field(1.0, gt=0)
    screen_learning_rate: float | None = Field(None, gt=0, description="reference fine-tune; default: train.learning_rate")
    screen_min_count: int = Field(
        5, ge=2, description="lexical and trigger confirmation: n-grams seen in fewer rows are not scored"
    )
    screen_pool: float = Field(
        0.4, gt=0.0, le=1.0, description="the benign subset is drawn from this least-suspicious fraction of each label"
    )
    drop_suspicious: float = Field(
        0.0, ge=0.0, lt=1.0, description="fraction of rows, most suspicious first, left out of training"
    )
    drop_confirmed: bool = Field(
        False, description="leave out every row that carries a confirmed trigger n-gram (label-pure, and its rows' "
        "other words argue for other labels; defenses/lexical.py)",
    )
    oversample: int = Field(1, ge=1, description="each benign sample is shown this many times (PDB uses 5)")
    benign_head: Literal["random", "plain"] = Field(
        "random", description="an encoder's new head: the benign outputs (y + n) start at random, or as copies of the "
        "plain outputs they are read as ('plain'); a causal LM answers with pretrained words either way",
    )

    @field_validator("output_prefix")
    @classmethod
    def _prefix_ends_in_space(cls, value: str) -> str:
        if not value.endswith(" "):
            raise ValueError("must end with a space, so that the answer after it tokenises as it does alone")
        return value

    @property
    def has_benign_subset(self) -> bool:
        return trains_benign_subset(self.name)

    @property
    def variant(self) -> str:
        """A short name for the defense and its non-default options, e.g. `p2p(random, screen=lexical, drop=0.1)`."""
        if not self.has_benign_subset:
            return self.name
        parts = [self.source]
        if self.trusted_size:
            parts.append(f"trusted={self.trusted_size}")
        if self.screen:
            parts.append("screen=" + "+".join(self.screen))
            if self.skip_reference_when_confirmed and "reference" in self.screen:
                parts.append("reference unless confirmed")
            if self.screen_pool < 1:
                parts.append(f"pool={self.screen_pool:g}")
        if self.drop_suspicious:
            parts.append(f"drop={self.drop_suspicious:g}")
        if self.drop_confirmed:
            parts.append("drop confirmed")
        if self.oversample > 1:
            parts.append(f"oversample={self.oversample}")
        settings = method_settings(self.section, self.name)
        if self.benign_head != (settings.section_defaults if settings else {}).get("benign_head", "random"):
            parts.append(f"{self.benign_head} head")
        return f"{self.name}({', '.join(parts)})"


class ModelConfig(_Strict):
    name: str = Field("tiny", description="'tiny', 'minilm', 'smollm2', a hub id, a local folder or a .gguf file")
    kind: Literal["auto", "causal", "encoder"] = "auto"
    finetune: Literal["full", "lora"] = "full"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="compute dtype; auto: bfloat16 on a GPU that has it, else float32. A LoRA base model "
        "is loaded in it; a full fine-tune keeps float32 weights and computes in it (mixed precision)",
    )
    quantization: Literal["none", "4bit", "8bit"] = Field(
        "none", description="QLoRA: load the frozen base model in 4 or 8 bits (bitsandbytes; needs CUDA and LoRA)"
    )
    verbalizer: Literal["words", "digits"] = Field(
        "words", description="causal LMs: answer with the task's words (positive, ..., and their benign twins) or "
        "with the output's digits (0..2n-1), as the official P2P code does"
    )
    prompt_format: Literal["auto", "chat", "plain"] = Field(
        "auto", description="causal LMs: 'chat' renders prompts through the tokenizer's chat template; auto picks it "
        "when the tokenizer has one",
    )
    system_prompt: str | None = Field(
        None, description="chat prompts: the system message ('' for an empty one); default: the template's own"
    )
    lora_r: int = Field(8, gt=0)
    lora_alpha: int = Field(16, gt=0)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    lora_targets: Literal["attention", "all-linear"] = Field(
        "attention", description="LoRA adapts the attention projections (found per architecture) or every linear "
        "layer but the output head"
    )
    max_length: int = Field(128, ge=16)
    max_new_tokens: int = Field(
        64, gt=0, description="generation: the longest output generated (greedy), not counting P2P's safe prefix"
    )
    max_target_tokens: int = Field(
        128, gt=0, description="generation: training targets are cut to this (counted), not counting the safe prefix"
    )
    freeze_embeddings: bool = Field(False, description="keep the input embeddings fixed (about 2x faster on CPU)")
    tiny_hidden_size: int = Field(128, gt=0)
    tiny_layers: int = Field(4, gt=0)
    tiny_vocab_size: int = Field(4096, ge=300)


class TrainConfig(_Strict):
    epochs: float = Field(3.0, gt=0)
    batch_size: int = Field(16, gt=0)
    eval_batch_size: int = Field(64, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    grad_accum: int = Field(1, gt=0)
    save_steps: int = Field(200, gt=0, description="checkpoint interval, for resuming an interrupted run")
    group_by_length: bool = Field(False, description="batch rows of similar length together: less padding, faster")
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass: less GPU memory, more time (off on CPU)"
    )


class ExperimentConfig(_Strict):
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    defense: DefenseConfig = Field(default_factory=DefenseConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("seed")
    @classmethod
    def _non_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("seed must be >= 0")
        return value

    @model_validator(mode="before")
    @classmethod
    def _task_attack(cls, data: Any) -> Any:
        """A generation task's own attack (its task file's `attack`) when the config names none."""
        if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
            return data
        task = GENERATION_TASKS.get(data["data"].get("dataset"))
        attack = data.get("attack") or {}
        if task is None or not isinstance(attack, dict) or "name" in attack:
            return data
        return {**data, "attack": {**task.attack, **attack}}

    def with_model(self, name: str) -> "ExperimentConfig":
        """This config for another model (`p2p defend --model`), checked as a run checks its model settings."""
        config = self.model_copy(update={"model": self.model.model_copy(update={"name": name})})
        check_model_settings(config.model)
        return config

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def config_hash(self) -> str:
        return content_hash(self.model_dump(mode="json"))


def check_model_settings(model: ModelConfig) -> None:
    """What the model's name decides about its other settings. Checked when a run starts, not when a config is
    loaded: `p2p defend` names its model after loading its config."""
    if model.name == "tiny" and model.kind == "encoder":
        raise ConfigError("model.kind encoder: model 'tiny' is a causal LM (a small Llama); use kind auto or causal, "
                          "or an encoder such as minilm")


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key=value")
    key, raw = item.split("=", 1)
    try:
        return key, yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{item}': the value is not valid YAML ({yaml_problem(exc)})") from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What a YAML error says, on one line, with the line and column where it has them."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + one_line(str(getattr(exc, "problem", None) or exc))


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """data['a']['b'] = value for key 'a.b', creating sections on the way."""
    *sections, last = key.strip().split(".")
    node = data
    for part in sections:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"setting '{key}': '{part}' is not a section")
    node[last] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted `key=value` overrides (values parsed as YAML: 0.05, true, [cf, mn])."""
    for item in overrides:
        key, value = _parse_override(item)
        set_dotted(data, key, value)
    return data


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file whose top level is a mapping (empty file: {}); errors name the file."""
    if Path(path).is_dir():
        raise ConfigError(f"{path}: is a directory, not a {what}")
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return loaded or {}


def _saved_methods(data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], type[MethodSettings]]]:
    """(section, its saved mapping, the settings class of the method it names) for the attack and the defense of a
    saved config; a section that is not a mapping or names no known method is skipped (validating or building it
    says what is wrong)."""
    for section in ("attack", "defense"):
        saved = data.get(section)
        settings = method_settings(section, saved.get("name")) if isinstance(saved, dict) else None
        if settings is not None:
            yield section, saved, settings


def in_todays_layout(data: dict[str, Any]) -> dict[str, Any]:
    """A saved config as today's layout reads it. Configs once kept every method's settings in one section; the
    settings of methods other than the one a section names are left out (the run never read them), and a setting of
    its own saved as null, which meant "the method's default", takes that default where the method now writes it."""
    data = copy.deepcopy(data)
    shared_fields = {"attack": AttackConfig.model_fields, "defense": DefenseConfig.model_fields}
    for section, saved, settings in _saved_methods(data):
        own = settings.model_fields
        for key in [k for k in saved if k not in shared_fields[section]]:
            if key not in own or (saved[key] is None and own[key].get_default(call_default_factory=True) is not None):
                del saved[key]
    return data


def what_it_predates(data: dict[str, Any]) -> list[str]:
    """The defaults of its defense a saved config (written in full) holds no value for: it was written before they
    existed, and filling them in today would pass a run of the older behaviour off as one of today's."""
    return [f"the default {key} of its {section}" for section, saved, settings in _saved_methods(data)
            for key in sorted(set(settings.section_defaults) - set(saved))]


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML config (or the defaults), apply overrides and validate; errors name the file and the field."""
    data = read_yaml_mapping(path) if path is not None else {}
    return validated_config(apply_overrides(data, overrides or []), str(path) if path is not None else "defaults")


def validated_config(data: dict[str, Any], source: str) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {validation_problems(exc)}") from exc
