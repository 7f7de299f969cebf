"""The data records every stage passes along."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One labelled text; `label` is an index into the task's label names."""

    text: str
    label: int


def as_records(examples: list[Example]) -> list[list[object]]:
    """A compact JSON-friendly form, used for hashing datasets."""
    return [[e.text, e.label] for e in examples]
