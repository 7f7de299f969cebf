"""n-gram statistics of labelled rows (ours, beyond the paper): how strongly an n-gram ties its rows to one label, and
which such n-grams are planted triggers.

A dirty-label trigger is an n-gram whose rows all carry the target label. Natural words can look the same (a topic
word in AG News, `worst` in SST-2), so purity alone is no verdict. What tells a trigger apart is the rest of its rows:
the attacker put it into rows whose content belongs to other labels, while a natural word sits among words that agree
with its label. `confirmed_triggers` checks exactly that with a bag-of-words classifier that cannot see the suspects.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import binom

from .io import content_hash

MAX_NGRAM = 3
PURITY = 0.9
"""A candidate trigger n-gram: at least this share of its rows carry its label."""
ALPHA = 0.01
"""Family-wise error of both tests (Bonferroni over the n-grams tested)."""
CROSS_FOLDS = 5


def row_ngrams(text: str, max_n: int = MAX_NGRAM) -> set[str]:
    words = text.lower().split()
    return {" ".join(words[i : i + n]) for n in range(1, max_n + 1) for i in range(len(words) - n + 1)}


def _label_counts(grams: Sequence[set[str]], labels: Sequence[int]) -> dict[str, dict[int, int]]:
    counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for row_grams, label in zip(grams, labels):
        for gram in row_grams:
            counts[gram][label] += 1
    return counts


def _label_shares(labels: Sequence[int]) -> dict[int, float]:
    return {label: sum(1 for y in labels if y == label) / len(labels) for label in set(labels)}


def _check_lengths(texts: Sequence[str], labels: Sequence[int]) -> None:
    if len(texts) != len(labels):
        raise ValueError("texts and labels differ in length")


def lexical_scores(texts: Sequence[str], labels: Sequence[int], min_count: int = 5) -> np.ndarray:
    """Per row: the strongest evidence (-log binomial tail) that one of its n-grams is over-represented in the
    row's own label. n-grams in fewer than `min_count` rows score 0."""
    _check_lengths(texts, labels)
    grams = [row_ngrams(t) for t in texts]
    counts = _label_counts(grams, labels)
    base = _label_shares(labels)
    cache: dict[tuple[str, int], float] = {}

    def evidence(gram: str, label: int) -> float:
        key = (gram, label)
        if key not in cache:
            seen = sum(counts[gram].values())
            hits = counts[gram][label]
            cache[key] = 0.0 if seen < min_count else float(-binom.logsf(hits - 1, seen, base[label]))
        return cache[key]

    return np.array([max((evidence(g, y) for g in row_grams), default=0.0) for row_grams, y in zip(grams, labels)])


def label_pure_ngrams(grams: Sequence[set[str]], labels: Sequence[int], min_count: int = 5) -> dict[str, int]:
    """n-gram -> label, for the n-grams (seen in `min_count` rows or more) whose rows carry one label at least
    `PURITY` of the time, more often than chance allows after a Bonferroni correction."""
    counts = _label_counts(grams, labels)
    base = _label_shares(labels)
    tested = {gram: by_label for gram, by_label in counts.items() if sum(by_label.values()) >= min_count}
    threshold = math.log(ALPHA / max(len(tested), 1))
    pure: dict[str, int] = {}
    for gram, by_label in tested.items():
        seen = sum(by_label.values())
        label, hits = max(by_label.items(), key=lambda item: item[1])
        if hits / seen >= PURITY and binom.logsf(hits - 1, seen, base[label]) <= threshold:
            pure[gram] = label
    return pure


def content_disagreement(texts: Sequence[str], labels: Sequence[int], hidden_words: set[str]) -> np.ndarray:
    """Per row: whether a bag-of-words classifier blind to `hidden_words`, fitted on the other folds, predicts another
    label than the row's. A row's fold comes from a hash of its text, so the order of the rows cannot change the
    answer and a duplicated row never helps predict itself."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    visible = [" ".join(w for w in t.lower().split() if w not in hidden_words) for t in texts]
    disagrees = np.zeros(len(texts), dtype=bool)
    try:
        features = CountVectorizer(ngram_range=(1, 2), min_df=2, token_pattern=r"\S+").fit_transform(visible)
    except ValueError:  # no word left in two rows: no evidence either way
        return disagrees
    labels_arr = np.asarray(labels)
    folds = np.array([int(content_hash(t)[:8], 16) % CROSS_FOLDS for t in texts])
    for fold in range(CROSS_FOLDS):
        held_out, fitted = folds == fold, folds != fold
        if not held_out.any() or len(set(labels_arr[fitted])) < 2:
            continue  # nothing to score, or nothing to learn from: no evidence either way
        model = LogisticRegression(max_iter=2000).fit(features[fitted], labels_arr[fitted])
        disagrees[held_out] = model.predict(features[held_out]) != labels_arr[held_out]
    return disagrees


@dataclass(frozen=True)
class TriggerFinding:
    """The confirmed trigger n-grams (each with its label) and the rows that carry one with that label."""

    triggers: dict[str, int]
    rows: list[int]


def confirmed_triggers(texts: Sequence[str], labels: Sequence[int], min_count: int = 5) -> TriggerFinding:
    """Label-pure n-grams whose rows' other words argue for other labels significantly more often than a typical
    row of that label (one-sided binomial test, Bonferroni over the candidates)."""
    _check_lengths(texts, labels)
    grams = [row_ngrams(t) for t in texts]
    candidates = label_pure_ngrams(grams, labels, min_count)
    if not candidates:
        return TriggerFinding({}, [])
    hidden = {word for gram in candidates for word in gram.split()}
    disagrees = content_disagreement(texts, labels, hidden)
    labels_arr = np.asarray(labels)
    error_rate = {label: float(disagrees[labels_arr == label].mean()) for label in set(labels)}
    threshold = ALPHA / len(candidates)
    triggers: dict[str, int] = {}
    flagged: set[int] = set()
    for gram, label in sorted(candidates.items()):
        rows = [i for i, (row_grams, y) in enumerate(zip(grams, labels)) if y == label and gram in row_grams]
        against = int(disagrees[rows].sum())
        if binom.sf(against - 1, len(rows), error_rate[label]) < threshold:
            triggers[gram] = label
            flagged.update(rows)
    return TriggerFinding(triggers, sorted(flagged))
