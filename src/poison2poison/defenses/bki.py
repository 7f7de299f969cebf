"""BKI, backdoor keyword identification (Chen and Dai, Neurocomputing 2021, arXiv 2007.12070): training-time
filtering.

A reference model is fine-tuned on the rows as given. For every training row and every word in it, the word's
importance is how much the reference's confidence in the row's own label falls when the word is deleted (the paper
measures the change of an LSTM's hidden state; a classifier's own confidence serves any model here). Each row
nominates its `bki_top_words` most important words; a word's score over the data is its mean importance times
log10 of how many rows nominated it, so a word that matters in many rows (a trigger) beats a word that matters
once. The `bki_keywords` best words (1, as published) with a positive score are taken as triggers, every row that
contains one is left out, and the model is trained on the rest.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Sequence

import numpy as np
from pydantic import Field

from ..config import MethodSettings
from ..data.types import Example
from .base import Probabilities, Reference
from .filtering import ReferenceFilter

log = logging.getLogger(__name__)


def word_importance(texts: Sequence[str], labels: Sequence[int], probabilities: Probabilities) -> list[dict[str, float]]:
    """Per row: {word: the fall in the own label's probability when that word is deleted} (largest fall kept for
    a repeated word); one call of `probabilities` scores every row and every deletion."""
    words = [t.split() for t in texts]
    variants = [v for w in words for v in [" ".join(w)] + [" ".join(w[:i] + w[i + 1 :]) for i in range(len(w))]]
    probs = probabilities(variants) if variants else np.zeros((0, 1))
    out, at = [], 0
    for w, label in zip(words, labels):
        own = probs[at : at + len(w) + 1, label]
        at += len(w) + 1
        importance: dict[str, float] = {}
        for word, p_without in zip(w, own[1:]):
            key = word.lower()
            importance[key] = max(importance.get(key, -math.inf), float(own[0] - p_without))
        out.append(importance)
    return out


def keyword_scores(importances: Sequence[dict[str, float]], top_words: int) -> dict[str, float]:
    """{word: mean importance over the rows that nominated it x log10(how many did)}."""
    total: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for row in importances:
        for word, value in sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))[:top_words]:
            total[word] += value
            count[word] += 1
    return {w: total[w] / count[w] * math.log10(count[w]) for w in total}


def rows_with_words(texts: Sequence[str], words: set[str]) -> list[int]:
    return [i for i, t in enumerate(texts) if words & {w.lower() for w in t.split()}]


class BKISettings(MethodSettings):
    bki_top_words: int = Field(5, ge=1, description="BKI: words each row nominates, most important first")
    bki_keywords: int = Field(1, ge=1, description="BKI: top-scoring words taken as triggers; rows with one go")


class BKI(ReferenceFilter):
    name = "bki"
    Settings = BKISettings
    settings: BKISettings

    def suspicious_rows(self, train: list[Example], reference: Reference) -> tuple[list[int], dict[str, object]]:
        texts = [e.text for e in train]
        scores = keyword_scores(word_importance(texts, [e.label for e in train], reference.probabilities),
                                self.settings.bki_top_words)
        ranked = [w for w in sorted(scores, key=lambda w: (-scores[w], w)) if scores[w] > 0]  # no evidence, no keyword
        keywords = ranked[: self.settings.bki_keywords]
        log.info("bki: keywords %s, with scores %s", keywords, [round(scores[w], 4) for w in keywords])
        return rows_with_words(texts, set(keywords)), {"bki_keywords": keywords}
