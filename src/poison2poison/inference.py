"""Batched classification scoring (only the answer tokens are scored, and a causal LM computes logits for the
last position alone) and batched greedy generation."""

from __future__ import annotations

import inspect
import logging
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from transformers import DynamicCache

from .errors import ModelSetupError
from .models.loading import LoadedModel
from .prompting import (
    PaddingCollator,
    Sample,
    TextSample,
    encode_causal,
    encode_encoder,
    encode_generation,
    encode_language_model,
)
from .specs import InferenceSpec

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 60.0
"""Where no live bar can be drawn (a log file, a batch job), a long pass says how far it is at this interval."""


@contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yields `advance(n)`: a bar on stderr (stdout carries results only) that is gone when the pass ends, or, off a
    terminal, a log line every minute."""
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True,
                  console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total)
        interactive = bar.console.is_terminal or bar.console.is_jupyter
        started = last = time.monotonic()
        done = 0

        def advance(n: int) -> None:
            nonlocal done, last
            done += n
            bar.advance(task, n)
            now = time.monotonic()
            if not interactive and now - last >= LOG_EVERY_SECONDS and done < total:
                last = now
                log.info("%s: %d/%d after %.0f s", label, done, total, now - started)

        yield advance


def _batches(items: Sequence[dict], size: int) -> list[Sequence[dict]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


SHARED_PREFIX_MIN = 4
"""Causal LMs: a token prefix that every prompt shares (a defense's trigger) is encoded once when it is at least this
long, and its keys and values reused for every batch."""


def _forward_batches(
    loaded: LoadedModel, samples: Sequence[Sample], max_length: int, batch_size: int, label: str,
    read: Callable[[Any, dict[str, Any]], torch.Tensor], width: int, reuse_prefix: bool = True,
) -> np.ndarray:
    """Run the model over the samples' prompts in batches; `read(model, batch)` keeps one row per sample."""
    model = loaded.model
    model.eval()
    if loaded.kind == "causal":
        features, _ = encode_causal(loaded.tokenizer, samples, [], max_length, with_target=False, frame=loaded.frame)
        collate = PaddingCollator(loaded.tokenizer.pad_token_id, side="left")
    else:
        features, _ = encode_encoder(loaded.tokenizer, samples, max_length, with_target=False)
        collate = PaddingCollator(loaded.tokenizer.pad_token_id, side="right")
    device = next(model.parameters()).device
    shared = shared_prefix_length(features) if loaded.kind == "causal" and reuse_prefix else 0
    out = []
    with torch.no_grad(), _progress(label, len(features)) as advance:
        prefix = _prefix_cache(model, features[0]["input_ids"][:shared], device) if shared >= SHARED_PREFIX_MIN else None
        cache_argument = _cache_argument(model) if prefix is not None else ""
        for chunk in _batches(features, batch_size):
            if prefix is not None:
                batch = _batch_after_prefix(collate, chunk, shared, prefix, device, model.config, cache_argument)
            else:
                batch = {k: v.to(device) for k, v in collate(list(chunk)).items()}
                if loaded.kind == "causal":
                    batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            out.append(read(model, batch).float().cpu().numpy())
            advance(len(chunk))
    return np.concatenate(out) if out else np.zeros((0, width), dtype=np.float32)


def shared_prefix_length(features: Sequence[dict[str, list[int]]]) -> int:
    """Tokens that begin every prompt, leaving each at least one token of its own."""
    if not features:
        return 0
    first = features[0]["input_ids"]
    length = min(len(f["input_ids"]) for f in features) - 1
    for feature in features[1:]:
        ids = feature["input_ids"]
        length = next((i for i in range(length) if ids[i] != first[i]), length)
    return max(length, 0)


def _prefix_cache(model: Any, prefix_ids: list[int], device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    output = model(input_ids=torch.tensor([prefix_ids], device=device), use_cache=True, logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in output.past_key_values.layers]


def _batch_after_prefix(
    collate: PaddingCollator, chunk: Sequence[dict], shared: int, prefix: list[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device, config: Any, cache_argument: str,
) -> dict[str, Any]:
    """The batch's own tokens (left-padded) after the cached prefix: the same positions and attention as the full
    prompts, with the padding between the prefix and each prompt's own tokens instead of before both."""
    own = collate([{"input_ids": f["input_ids"][shared:]} for f in chunk])
    rows = own["input_ids"].shape[0]
    mask = torch.cat([torch.ones(rows, shared, dtype=own["attention_mask"].dtype), own["attention_mask"]], dim=1)
    positions = (shared + own["attention_mask"].cumsum(-1) - 1).clamp(min=shared)
    cache = DynamicCache([(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix], config=config)
    return {"input_ids": own["input_ids"].to(device), "attention_mask": mask.to(device),
            "position_ids": positions.to(device), cache_argument: cache}


def _cache_argument(model: Any) -> str:
    """The name of the key/value cache argument: `cache` in recent transformers (which warn on the older name)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def score_samples(
    loaded: LoadedModel, samples: Sequence[Sample], max_length: int, batch_size: int = 64, label: str = "score",
    reuse_prefix: bool = True,
) -> np.ndarray:
    """Scores of shape (len(samples), num_outputs): answer-token logits (causal) or head logits (encoder).

    On a causal LM, a prefix every prompt shares (a defense's trigger) is encoded once (`reuse_prefix`)."""

    answer_ids = torch.tensor(loaded.answer_ids) if loaded.kind == "causal" else None

    def logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if answer_ids is not None:
            last = model(**batch, logits_to_keep=1).logits[:, -1, :]
            return last[:, answer_ids.to(last.device)]
        return model(**batch).logits

    return _forward_batches(loaded, samples, max_length, batch_size, label, logits, loaded.num_outputs, reuse_prefix)


def embed_samples(
    loaded: LoadedModel, samples: Sequence[Sample], max_length: int, batch_size: int = 64, label: str = "embed"
) -> np.ndarray:
    """The last layer's representation at the position the answer is read from: the final token of a causal LM's
    prompt, the first token (CLS) of an encoder's. Shape (len(samples), hidden size)."""
    position = -1 if loaded.kind == "causal" else 0

    def hidden(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        extra = {"logits_to_keep": 1} if loaded.kind == "causal" else {}
        return model(**batch, output_hidden_states=True, **extra).hidden_states[-1][:, position, :]

    return _forward_batches(loaded, samples, max_length, batch_size, label, hidden, loaded.model.config.hidden_size)


def label_probabilities(
    loaded: LoadedModel, spec: InferenceSpec, texts: Sequence[str], max_length: int, batch_size: int = 64,
    label: str = "probabilities",
) -> np.ndarray:
    """(len(texts), number of labels): the softmax over outputs, summed into the labels they project to."""
    scores = score_samples(loaded, [spec.present(t) for t in texts], max_length, batch_size, label)
    return projected_probabilities(scores, spec.label_of_output)


def projected_probabilities(scores: np.ndarray, label_of_output: Sequence[int]) -> np.ndarray:
    """(N, number of labels) from (N, outputs) scores: the softmax over outputs, summed into their labels."""
    probs = torch.softmax(torch.from_numpy(scores), dim=1).numpy()
    projected = np.asarray(label_of_output)
    return np.stack([probs[:, projected == j].sum(axis=1) for j in range(projected.max() + 1)], axis=1)


def perplexities(
    loaded: LoadedModel, texts: Sequence[str], max_length: int, batch_size: int = 32, label: str = "perplexity"
) -> np.ndarray:
    """Per text, exp(mean negative log-likelihood of its tokens after the first) under a causal LM."""
    model, out = loaded.model, []
    model.eval()
    features = encode_language_model(loaded.tokenizer, texts, max_length)
    collate = PaddingCollator(loaded.tokenizer.pad_token_id, side="right")
    device = next(model.parameters()).device
    with torch.no_grad(), _progress(label, len(features)) as advance:
        for chunk in _batches(features, batch_size):
            batch = {k: v.to(device) for k, v in collate(list(chunk)).items()}
            labels = batch.pop("labels")[:, 1:]
            logits = model(**batch).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
            mask = (labels != -100).float()
            out.append(torch.exp((nll * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy())
            advance(len(chunk))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


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
    features, _ = encode_generation(
        tokenizer, samples, template, max_length - max_new_tokens, 0, with_target=False, frame=loaded.frame
    )
    collate = PaddingCollator(tokenizer.pad_token_id, side="left")
    device = next(model.parameters()).device
    out: list[str] = []
    with _progress(label, len(features)) as advance:
        for chunk in _batches(features, batch_size):
            batch = {k: v.to(device) for k, v in collate(list(chunk)).items()}
            generated = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            )
            new_tokens = generated[:, batch["input_ids"].shape[1] :]
            out.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
            advance(len(chunk))
    return [text.strip() for text in out]
