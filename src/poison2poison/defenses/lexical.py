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

from ..io import content_hash

MAX_NGRAM = 3
"""Longest n-gram scored: AddSent's sentence is caught by its 2- and 3-grams, longer ones add nothing."""
PURITY = 0.9
"""A candidate trigger n-gram: at least this share of its rows carry its label."""
ALPHA = 0.01
"""Family-wise error of both tests (Bonferroni over the n-grams tested)."""
MIN_EFFECT = 1.5
"""A confirmed trigger's rows disagree with their label at least this many times as often as rows without a
candidate: with thousands of rows, a natural word a little harder than average would pass significance alone."""
CROSS_FOLDS = 5
"""Folds of the cross-fitted content classifier: each row is judged by a model fitted on the other four fifths."""
SHARED_ROWS = 0.5
"""Candidates of one label are tested as one when at least this share of the rarer one's rows carry both: a BadNets
attack puts several trigger words in each poisoned row, so at a low rate each word has a dozen rows but together they
have all of them."""


def _words(text: str) -> list[str]:
    return text.lower().split()


def row_ngrams(text: str, max_n: int = MAX_NGRAM) -> set[str]:
    """The distinct word n-grams (n <= max_n) of a text, lower-cased: a row counts once per n-gram."""
    words = _words(text)
    return {" ".join(words[i : i + n]) for n in range(1, max_n + 1) for i in range(len(words) - n + 1)}


def _label_counts(grams: Sequence[set[str]], labels: Sequence[int]) -> dict[str, dict[int, int]]:
    counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for row_grams, label in zip(grams, labels):
        for gram in row_grams:
            counts[gram][label] += 1
    return counts


def _label_shares(labels: Sequence[int]) -> dict[int, float]:
    return {label: sum(1 for y in labels if y == label) / len(labels) for label in set(labels)}


def _check_lengths(rows: Sequence[object], labels: Sequence[int], what: str = "texts") -> None:
    if len(rows) != len(labels):
        raise ValueError(f"{what} and labels differ in length")


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
    _check_lengths(grams, labels, "grams")
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
    label than the row's. A row's fold comes from a hash of its text, so the order of the rows does not decide the
    folds, and a duplicated row never helps predict itself."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    visible = [" ".join(w for w in _words(t) if w not in hidden_words) for t in texts]
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


def _typical_disagreement(disagrees: np.ndarray, labels: np.ndarray, carrying: np.ndarray) -> dict[int, float]:
    """Per label, how often its rows that carry no candidate disagree with it; 1 where every row carries one (no
    baseline, so no verdict)."""
    typical: dict[int, float] = {}
    for label in np.unique(labels):
        plain = (labels == label) & ~carrying
        typical[int(label)] = float(disagrees[plain].mean()) if plain.any() else 1.0
    return typical


def confirms(against: int, rows: int, typical: float, tests: int) -> bool:
    """Whether `against` disagreements among a candidate's `rows` are too many for rows as typical as the rest: at
    least `MIN_EFFECT` times the typical rate, and significant after a Bonferroni correction over `tests`."""
    return against >= MIN_EFFECT * typical * rows and binom.sf(against - 1, rows, typical) < ALPHA / tests


@dataclass(frozen=True)
class TriggerFinding:
    """The confirmed trigger n-grams, each with its label and the rows that carry it with that label."""

    triggers: dict[str, int]
    carriers: dict[str, list[int]]

    @property
    def rows(self) -> list[int]:
        """Every row that carries a confirmed trigger with its label, once."""
        return sorted({i for rows in self.carriers.values() for i in rows})

    @property
    def triggers_by_row(self) -> dict[int, list[str]]:
        """row -> the confirmed trigger n-grams it carries, in n-gram order: what a user is told of a flagged row."""
        carried: dict[int, list[str]] = defaultdict(list)
        for gram, rows in sorted(self.carriers.items()):
            for i in rows:
                carried[i].append(gram)
        return dict(carried)



def rare_pure_words(grams: Sequence[set[str]], labels: Sequence[int], known: set[str], min_count: int = 5) -> dict[str, int]:
    """word -> label, for single words (not in `known`, seen in `min_count` rows or more) whose rows all carry one
    label, less likely than `ALPHA` by chance. Uncorrected: the confirmation that follows is corrected over these."""
    _check_lengths(grams, labels, "grams")
    counts = _label_counts([{g for g in row if " " not in g} for row in grams], labels)
    base = _label_shares(labels)
    threshold = math.log(ALPHA)
    pure: dict[str, int] = {}
    for word, by_label in counts.items():
        if len(by_label) != 1 or word in known:
            continue
        ((label, hits),) = by_label.items()
        if hits >= min_count and binom.logsf(hits - 1, hits, base[label]) <= threshold:
            pure[word] = label
    return pure


def confirmed_triggers(texts: Sequence[str], labels: Sequence[int], min_count: int = 5) -> TriggerFinding:
    """Label-pure n-grams whose rows' other words argue for other labels: significantly more often (one-sided
    binomial test, Bonferroni over the tests), and at least `MIN_EFFECT` times as often, as the rows of that
    label that carry no candidate. Candidates of one label that share most of their rows (`SHARED_ROWS`) are tested
    as one, on all the rows any of them carries.

    A second pass looks for what a low poison rate leaves: trigger words in a dozen or two rows each, too few to pass
    the first test's correction over every n-gram. Its candidates are single words whose rows all carry one label;
    they face the same confirmation, with the first pass's triggers hidden and their rows out of the baseline."""
    _check_lengths(texts, labels)
    grams = [row_ngrams(t) for t in texts]
    first = _confirm(texts, labels, grams, label_pure_ngrams(grams, labels, min_count), TriggerFinding({}, {}))
    second = _confirm(texts, labels, grams, rare_pure_words(grams, labels, set(first.triggers), min_count), first)
    return TriggerFinding({**first.triggers, **second.triggers}, {**first.carriers, **second.carriers})


def _confirm(
    texts: Sequence[str], labels: Sequence[int], grams: Sequence[set[str]], candidates: dict[str, int],
    known: TriggerFinding,
) -> TriggerFinding:
    """The candidates whose rows' other words argue for other labels. Every word of every candidate (and of the
    `known` triggers) is hidden from the content classifier, common words included: a trigger sentence hidden only
    in part (its rare words) still gives itself away through the rest."""
    if not candidates:
        return TriggerFinding({}, {})
    carriers: dict[str, list[int]] = defaultdict(list)  # candidate -> the rows that carry it with its label
    for i, (row_grams, label) in enumerate(zip(grams, labels)):
        for gram in row_grams:
            if candidates.get(gram) == label:
                carriers[gram].append(i)
    hidden = {word for gram in [*candidates, *known.triggers] for word in gram.split()}
    disagrees = content_disagreement(texts, labels, hidden)
    carrying = np.zeros(len(texts), dtype=bool)
    carrying[[i for rows in carriers.values() for i in rows] + list(known.rows)] = True
    typical = _typical_disagreement(disagrees, np.asarray(labels), carrying)
    groups = _co_occurring(carriers, candidates)
    confirmed: dict[str, list[int]] = {}
    for group in groups:
        rows = sorted({i for gram in group for i in carriers[gram]})
        if confirms(int(disagrees[rows].sum()), len(rows), typical[candidates[group[0]]], len(groups)):
            confirmed.update((gram, carriers[gram]) for gram in group)
    return TriggerFinding({gram: candidates[gram] for gram in sorted(confirmed)},
                          {gram: confirmed[gram] for gram in sorted(confirmed)})


def _co_occurring(carriers: dict[str, list[int]], candidates: dict[str, int]) -> list[list[str]]:
    """The candidates in groups, each tested as one: candidates of one label are linked when they share at least
    `SHARED_ROWS` of the rarer one's rows, and a group is what the links join."""
    names = sorted(carriers)
    group_of = {name: name for name in names}

    def root(name: str) -> str:
        while group_of[name] != name:
            name = group_of[name]
        return name

    row_sets = {name: set(carriers[name]) for name in names}
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = len(row_sets[first] & row_sets[second])
            if candidates[first] == candidates[second] and shared >= SHARED_ROWS * min(len(row_sets[first]),
                                                                                    len(row_sets[second])):
                group_of[root(first)] = root(second)
    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        groups[root(name)].append(name)
    return list(groups.values())


COPIED = 0.1
"""An output n-gram that its rows' sources also hold more often than this is copied from the input, not planted."""
LABEL_LIKE_OUTPUTS = 20
"""Text pairs with at most this many distinct outputs are a classification in disguise (an instruction-tuned
sentiment task): their outputs are labels, and the classification test, content check included, applies."""


@dataclass(frozen=True)
class PairFinding:
    """Planted (input n-gram, output n-gram) pairs of text-to-text data, and the rows that carry either half."""

    pairs: dict[str, str]
    """input n-gram (the trigger) -> the output n-gram it brings with it (the attacker's target)."""
    rows: list[int]


def _uncopied_output_rows(sources: Sequence[set[str]], targets: Sequence[set[str]]) -> dict[str, list[int]]:
    """Output n-gram -> the rows whose target holds it, for the n-grams their rows' sources rarely hold too."""
    rows: dict[str, list[int]] = defaultdict(list)
    copied: dict[str, int] = defaultdict(int)
    for i, (source, target) in enumerate(zip(sources, targets)):
        for gram in target:
            rows[gram].append(i)
            copied[gram] += gram in source
    return {gram: held for gram, held in rows.items() if copied[gram] <= COPIED * len(held)}


PUNCTUATION = ".,:;!?\"'()[]"
"""Stripped from the ends of words when inputs and outputs are compared: 'Anna:' in a dialogue is 'Anna' in its
summary."""


def _plain_ngrams(text: str) -> set[str]:
    words = [w for w in (w.strip(PUNCTUATION) for w in _words(text)) if w]
    return {" ".join(words[i : i + n]) for n in range(1, MAX_NGRAM + 1) for i in range(len(words) - n + 1)}


def paired_triggers(sources: Sequence[str], targets: Sequence[str], min_count: int = 5) -> PairFinding:
    """Input n-grams and output n-grams that come together far beyond chance: a generation backdoor's trigger and its
    target phrase (or its reasoning step). For each output n-gram not copied from the input, an input n-gram (in
    `min_count` rows or more) is confirmed when at least `PURITY` of its rows carry the output n-gram and at least
    `PURITY` of the output n-gram's rows carry it, more often than the output n-gram's own frequency allows (one-sided
    binomial test, Bonferroni over every pair tested). The second share keeps out an output n-gram that every row
    has, such as the '=' of a worked answer."""
    _check_lengths(sources, targets, "sources")
    source_grams = [_plain_ngrams(s) for s in sources]
    target_grams = [_plain_ngrams(t) for t in targets]
    outputs = {g: rows for g, rows in _uncopied_output_rows(source_grams, target_grams).items() if len(rows) >= min_count}
    input_rows: dict[str, list[int]] = defaultdict(list)
    for i, grams in enumerate(source_grams):
        for gram in grams:
            input_rows[gram].append(i)
    inputs = {gram: rows for gram, rows in input_rows.items() if len(rows) >= min_count}
    threshold = math.log(ALPHA / max(len(outputs) * len(inputs), 1))
    pairs: dict[str, str] = {}
    carried: set[int] = set()
    for output, rows in sorted(outputs.items()):
        share = len(rows) / len(sources)
        together: dict[str, int] = defaultdict(int)
        for i in rows:
            for gram in source_grams[i]:
                together[gram] += 1
        for gram, hits in together.items():
            seen = len(inputs.get(gram, ()))
            if (seen and min(hits / seen, hits / len(rows)) >= PURITY
                    and binom.logsf(hits - 1, seen, share) <= threshold):
                if len(rows) > len(outputs.get(pairs.get(gram, ""), ())):
                    pairs[gram] = output  # the most frequent output n-gram it brings names the pair
                carried.update(inputs[gram])
                carried.update(rows)
    return PairFinding(dict(sorted(pairs.items())), sorted(carried))


def generation_triggers(sources: Sequence[str], targets: Sequence[str], min_count: int = 5) -> PairFinding:
    """Planted triggers in text pairs. Outputs that are labels in disguise (an instruction-tuned classification) get
    the label-purity test: an input n-gram whose rows all bring one answer, beyond chance after the Bonferroni
    correction. The content check of `confirmed_triggers` is left out there, so a natural word as pure as a trigger
    is left out with the poison (docs/generation.md measures how often). Free text gets the input-output pairing
    test."""
    outputs = sorted({t.strip().lower() for t in targets})
    if len(outputs) > LABEL_LIKE_OUTPUTS:
        return paired_triggers(sources, targets, min_count)
    labels = [outputs.index(t.strip().lower()) for t in targets]
    grams = [row_ngrams(s) for s in sources]
    pure = label_pure_ngrams(grams, labels, min_count)
    rows = [i for i, (row, label) in enumerate(zip(grams, labels)) if any(pure.get(g) == label for g in row)]
    return PairFinding({gram: outputs[label] for gram, label in sorted(pure.items())}, rows)
