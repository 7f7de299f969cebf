"""The data records every stage passes along."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One labelled text; `label` is an index into the task's label names."""

    text: str
    label: int


@dataclass(frozen=True)
class TextPair:
    """One generation example: the input a task's prompt template wraps, and the reference output."""

    source: str
    target: str


def as_records(examples: list[Example] | list[TextPair]) -> list[list[object]]:
    """A compact JSON-friendly form, used for hashing datasets."""
    return [[e.text, e.label] if isinstance(e, Example) else [e.source, e.target] for e in examples]
