"""Clean accuracy and attack success rate, each with its denominator."""

from __future__ import annotations

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
