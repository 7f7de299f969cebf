"""Batched classification scoring (only the answer tokens are scored, and a causal LM computes logits for the
last position alone) and batched greedy generation."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from .defenses.base import InferenceSpec
from .errors import ModelSetupError
from .models.loading import LoadedModel
from .prompting import PaddingCollator, Sample, TextSample, encode_causal, encode_encoder, encode_generation


def _batches(items: Sequence[dict], size: int) -> list[Sequence[dict]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@torch.no_grad()
def score_samples(
    loaded: LoadedModel, samples: Sequence[Sample], max_length: int, batch_size: int = 64, label: str = "score"
) -> np.ndarray:
    """Scores of shape (len(samples), num_outputs): answer-token logits (causal) or head logits (encoder)."""
    model = loaded.model
    model.eval()
    if loaded.kind == "causal":
        features, _ = encode_causal(loaded.tokenizer, samples, [], max_length, with_target=False)
        collate = PaddingCollator(loaded.tokenizer.pad_token_id, side="left")
        answer_ids = torch.tensor(loaded.answer_ids)
    else:
        features, _ = encode_encoder(loaded.tokenizer, samples, max_length, with_target=False)
        collate = PaddingCollator(loaded.tokenizer.pad_token_id, side="right")
    device = next(model.parameters()).device
    out = []
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task(label, total=len(features))
        for chunk in _batches(features, batch_size):
            batch = {k: v.to(device) for k, v in collate(list(chunk)).items()}
            if loaded.kind == "causal":
                positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
                logits = model(**batch, position_ids=positions, logits_to_keep=1).logits[:, -1, :]
                out.append(logits[:, answer_ids.to(device)].float().cpu().numpy())
            else:
                out.append(model(**batch).logits.float().cpu().numpy())
            bar.advance(task, len(chunk))
    return np.concatenate(out) if out else np.zeros((0, loaded.num_outputs), dtype=np.float32)


def predict(
    loaded: LoadedModel, spec: InferenceSpec, texts: Sequence[str], max_length: int, batch_size: int = 64,
    label: str = "predict",
) -> tuple[list[int], list[int]]:
    """(labels, raw outputs): every text is presented as the defense requires and projected back."""
    scores = score_samples(loaded, [spec.present(t) for t in texts], max_length, batch_size, label)
    raw = scores.argmax(axis=1).tolist() if len(scores) else []
    return [spec.project(j) for j in raw], raw


@torch.no_grad()
def generate_texts(
    loaded: LoadedModel,
    samples: Sequence[TextSample],
    template: str,
    max_length: int,
    max_new_tokens: int,
    batch_size: int = 16,
    label: str = "generate",
) -> list[str]:
    """Greedy outputs, decoded without special tokens. Prompts are cut to leave room for `max_new_tokens`."""
    if loaded.kind != "causal":
        raise ModelSetupError("generation needs a causal LM; this model is an encoder (use a causal model or 'tiny')")
    if max_new_tokens >= max_length:
        raise ModelSetupError(f"model.max_new_tokens {max_new_tokens} must be below model.max_length {max_length}")
    tokenizer, model = loaded.tokenizer, loaded.model
    model.eval()
    features, _ = encode_generation(tokenizer, samples, template, max_length - max_new_tokens, 0, with_target=False)
    collate = PaddingCollator(tokenizer.pad_token_id, side="left")
    device = next(model.parameters()).device
    out: list[str] = []
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task(label, total=len(features))
        for chunk in _batches(features, batch_size):
            batch = {k: v.to(device) for k, v in collate(list(chunk)).items()}
            generated = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            )
            new_tokens = generated[:, batch["input_ids"].shape[1] :]
            out.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
            bar.advance(task, len(chunk))
    return [text.strip() for text in out]
