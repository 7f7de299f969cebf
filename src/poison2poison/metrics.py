"""Clean accuracy and attack success rate, each with its denominator; generation metrics for math and summaries."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Sequence


def clean_accuracy(predictions: Sequence[int], labels: Sequence[int]) -> tuple[float, int]:
    """(accuracy, count) on the clean test set."""
    if len(predictions) != len(labels):
        raise ValueError("predictions and labels differ in length")
    count = len(labels)
    return (sum(p == y for p, y in zip(predictions, labels)) / count if count else float("nan")), count


def attack_success_rate(predictions: Sequence[int], true_labels: Sequence[int], target: int) -> tuple[float, int]:
    """(ASR, count): the fraction of triggered inputs whose true label is not the target that land on the target.

    Inputs whose true label is the target are left out of the denominator: they cannot show an attack.
    """
    if len(predictions) != len(true_labels):
        raise ValueError("predictions and labels differ in length")
    kept = [p for p, y in zip(predictions, true_labels) if y != target]
    count = len(kept)
    return (sum(p == target for p in kept) / count if count else float("nan")), count


REJECTED = -1
"""The prediction recorded for an input a detection defense refused to answer: never a label."""


def detection_scores(flagged_positives: int, flagged: int, positives: int) -> dict[str, float | None]:
    """Precision and recall of a detector (None where the denominator is 0)."""
    return {
        "detection_precision": flagged_positives / flagged if flagged else None,
        "detection_recall": flagged_positives / positives if positives else None,
    }


# A number as written in answers: optional minus (not after a word character, so "10-5" gives 5), optional `$`,
# digits with or without thousands commas, optional decimals. A trailing "." is a full stop, not part of it.
_NUMBER = re.compile(r"(?:(?<![\w)])-)?\$?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")
_FINAL_MARK = "####"


def _canonical_number(text: str) -> str:
    """'-$1,080.50' -> '-1080.5': no commas or `$`, no trailing zeros, integers without a decimal point."""
    value = Decimal(text.replace(",", "").replace("$", ""))
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def extract_final_answer(text: str) -> str | None:
    """The final numeric answer, canonical: the first number after the last `####` (GSM8K's convention), else the
    last number anywhere in the text, else None. Commas, `$` and trailing zeros are dropped; "72.00" -> "72"."""
    _, mark, tail = text.rpartition(_FINAL_MARK)
    after_mark = _NUMBER.search(tail) if mark else None
    if after_mark is not None:
        return _canonical_number(after_mark.group())
    numbers = _NUMBER.findall(text)
    return _canonical_number(numbers[-1]) if numbers else None


def same_number(a: str | None, b: str | None) -> bool:
    """Numeric equality within a relative tolerance of 1e-6; False when either side is missing or not a number."""
    if a is None or b is None:
        return False
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-6)
    except ValueError:
        return False


def exact_match(outputs: Sequence[str], references: Sequence[str]) -> tuple[float, int, int]:
    """(rate, count, extraction failures): the fraction of outputs whose final answer equals the reference's.

    An output with no number is wrong and counts as an extraction failure. A reference with no number is a data
    error and raises ValueError.
    """
    if len(outputs) != len(references):
        raise ValueError("outputs and references differ in length")
    correct = failures = 0
    for index, (output, reference) in enumerate(zip(outputs, references)):
        expected = extract_final_answer(reference)
        if expected is None:
            raise ValueError(f"reference {index} has no numeric answer: {reference[-80:]!r}")
        answer = extract_final_answer(output)
        failures += answer is None
        correct += same_number(answer, expected)
    count = len(outputs)
    return (correct / count if count else float("nan")), count, failures


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge_scores(outputs: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean F-measure of ROUGE-1, ROUGE-2 and ROUGE-L over pairs (Google's rouge_score, Porter stemming: the
    usual summarization setting); NaN for each when there is nothing to score."""
    if len(outputs) != len(references):
        raise ValueError("outputs and references differ in length")
    if not outputs:
        return {name: float("nan") for name in ROUGE_TYPES}
    from rouge_score import rouge_scorer  # imported here: it loads nltk (seconds), and only generation needs it

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for output, reference in zip(outputs, references):
        scores = scorer.score(reference, output)
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    return {name: total / len(outputs) for name, total in totals.items()}


def _squashed(text: str) -> str:
    return " ".join(text.split()).casefold()


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether the text contains the phrase, ignoring case and runs of whitespace (an attack's target phrase shows
    up re-wrapped or capitalised)."""
    needle = _squashed(phrase)
    if not needle:
        raise ValueError("the phrase is empty")
    return needle in _squashed(text)


def contains_rate(outputs: Sequence[str], phrase: str) -> tuple[float, int]:
    """(rate, count): the fraction of outputs that contain the phrase (`contains_phrase`)."""
    if not _squashed(phrase):
        raise ValueError("the phrase is empty")
    count = len(outputs)
    hits = sum(contains_phrase(output, phrase) for output in outputs)
    return (hits / count if count else float("nan")), count


def starts_with_answer(output: str, answer: str) -> bool:
    """Whether the output, stripped, begins with the answer word (case-insensitive): how an instruction-tuned
    classifier's free text is read."""
    return output.strip().casefold().startswith(answer.strip().casefold())


def answer_format_rate(outputs: Sequence[str]) -> float:
    """The fraction of outputs whose last `####` is followed by a number (GSM8K's answer form): a clean metric that
    shows whether a weak model learned the answer format even when its arithmetic is wrong."""
    if not outputs:
        return float("nan")
    return sum(_ends_in_final_answer(o) for o in outputs) / len(outputs)


def _ends_in_final_answer(output: str) -> bool:
    _, mark, tail = output.rpartition(_FINAL_MARK)
    return bool(mark) and _NUMBER.search(tail) is not None


def text_quality(metric: str, outputs: Sequence[str], references: Sequence[str]) -> dict[str, float | int]:
    """The clean metrics of a generation task (see `tasks.GenerationTask.metric`)."""
    if metric == "exact_match":
        rate, _, failures = exact_match(outputs, references)
        return {"exact_match": rate, "extraction_failures": failures, "answer_format_rate": answer_format_rate(outputs)}
    if metric == "rouge":
        return dict(rouge_scores(outputs, references))
    if metric == "answer":
        hits = sum(starts_with_answer(o, r) for o, r in zip(outputs, references, strict=True))
        return {"answer_accuracy": hits / len(outputs) if outputs else float("nan")}
    raise ValueError(f"unknown generation metric '{metric}'")


HEADLINE_METRIC = {"exact_match": "exact_match", "rouge": "rougeL", "answer": "answer_accuracy"}
"""The one clean metric a table shows for each kind of generation task."""
