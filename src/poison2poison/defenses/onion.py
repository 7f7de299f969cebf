"""ONION (Qi et al., EMNLP 2021, arXiv 2011.10369): an inference-time filter that deletes outlier words.

For an input of words w_1..w_n, the suspicion of w_i is p_0 - p_i, where p_0 is the language-model perplexity of the
input and p_i that of the input without w_i. A word that raises perplexity (an inserted rare trigger such as "cf")
lowers it when removed, and every word whose suspicion exceeds `onion_threshold` (default 0) is deleted before the
classifier sees the input. Inputs of one word are kept as they are, and so is an input every word of which would go
(nothing then tells the words apart). Training is plain fine-tuning.

The scoring LM is `onion_model` fine-tuned for `onion_epochs` on the training texts: by default a `tiny` causal LM
trained from scratch on them, as no pretrained LM is at hand offline; name a pretrained causal LM (GPT-2 in the paper)
and set `onion_epochs: 0` to use it as it is.
"""

from __future__ import annotations

import random
from typing import Sequence

from pydantic import Field, model_validator

from ..config import MethodSettings
from ..data.types import Example
from ..errors import ConfigError
from .base import DefenseContext, GuardContext, Guarded, InputGuard, NoDefense, Perplexity, PreparedTrain


def onion_filter(texts: Sequence[str], perplexity: Perplexity, threshold: float) -> list[str]:
    """Each text without its suspicious words; one call of `perplexity` scores every text and every deletion."""
    words = [t.split() for t in texts]
    variants: list[str] = []
    for w in words:
        if len(w) > 1:
            variants.append(" ".join(w))
            variants.extend(" ".join(w[:i] + w[i + 1 :]) for i in range(len(w)))
    scores = iter(perplexity(variants).tolist() if variants else [])
    out = []
    for text, w in zip(texts, words):
        if len(w) <= 1:
            out.append(text)
            continue
        full = next(scores)
        kept = [word for word in w if full - next(scores) <= threshold]
        out.append(" ".join(kept) if kept else text)
    return out


class OnionGuard(InputGuard):
    def __init__(self, perplexity: Perplexity, threshold: float) -> None:
        self.perplexity, self.threshold = perplexity, threshold

    def guard(self, texts: Sequence[str]) -> Guarded:
        return Guarded(onion_filter(texts, self.perplexity, self.threshold), [False] * len(texts))


class OnionSettings(MethodSettings):
    onion_model: str = Field("tiny", description="ONION: the causal LM that scores perplexity (hub id or path)")
    onion_epochs: float = Field(3.0, ge=0, description="ONION: epochs on the training texts (0: use the LM as it is)")
    onion_learning_rate: float = Field(1e-3, gt=0, description="ONION: the scoring LM's learning rate")
    onion_threshold: float = Field(0.0, description="ONION: words whose deletion lowers perplexity by more go")

    @model_validator(mode="after")
    def _scorer_is_trained(self) -> "OnionSettings":
        if self.onion_model == "tiny" and self.onion_epochs == 0:
            raise ValueError("onion_epochs 0 keeps the scorer as it is, and a 'tiny' scorer would be untrained; "
                             "name a pretrained causal LM in onion_model or train it for some epochs")
        return self


class Onion(NoDefense):
    """Plain fine-tuning; every input is filtered by ONION before the model answers."""

    name = "onion"
    needs_language_model = True
    Settings = OnionSettings
    settings: OnionSettings

    def prepare(self, train: list[Example], rng: random.Random, context: DefenseContext) -> PreparedTrain:
        prepared = super().prepare(train, rng, context)
        prepared.details.update(onion_threshold=self.settings.onion_threshold, onion_model=self.settings.onion_model)
        return prepared

    def input_guard(self, context: GuardContext) -> InputGuard:
        if context.perplexity is None:
            raise ConfigError("ONION needs a language model to score inputs (GuardContext.perplexity)")
        return OnionGuard(context.perplexity, self.settings.onion_threshold)

