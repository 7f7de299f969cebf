"""Labels as files write them, mapped to the ids a model is trained on.

A label is an integer (`1`, or `" 2"` as the AG News TSV pads it) or a name (`"positive"`, `"offensive"`). Names are
mapped to ids and the mapping is kept, so that a defended model answers with the names it was given. One file uses
one kind: a mix of numbers and names is an error, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import DataFormatError


@dataclass(frozen=True)
class Where:
    """Where values come from, for errors: a file (or a hub dataset) and what its positions count."""

    path: str | Path
    unit: str = "line"

    def error(self, line: int | None, field: str | None, problem: str) -> DataFormatError:
        return DataFormatError(self.path, line, field, problem, self.unit)


def _integer(value: Any) -> int | None:
    """The integer a label value writes, or None when it writes none (a name, a float, a bool, null)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _name(value: Any) -> str | None:
    """The label name a value writes: a string with text that is not an integer."""
    if isinstance(value, str) and value.strip() and _integer(value) is None:
        return value.strip()
    return None


def _in_range(label: int, num_labels: int | None, where: Where, line: int, field: str) -> int:
    """`num_labels` None: any id from 0 (the data check then says which ids have no rows)."""
    if label < 0 or (num_labels is not None and label >= num_labels):
        allowed = f"0..{num_labels - 1}" if num_labels is not None else ">= 0"
        raise where.error(line, field, f"label {label} is out of range ({allowed})")
    return label


def _known_id(
    number: int | None, name: str | None, known_names: Sequence[str], where: Where, line: int, field: str
) -> int:
    """The id of a label that must be one of `known_names`, written as a name or as its index."""
    if number is not None:
        return _in_range(number, len(known_names), where, line, field)
    if name not in known_names:
        raise where.error(line, field, f"label {name!r} is not one of the labels ({', '.join(known_names)})")
    return list(known_names).index(name)


def label_ids(
    values: Sequence[tuple[int, Any]], where: Where, field: str, known_names: Sequence[str] | None = None
) -> tuple[list[int], tuple[str, ...] | None]:
    """(the id of each (line, value), the names the ids stand for when the file wrote names).

    With `known_names` (a named task, or the training data a trusted file must agree with), a name must be one of
    them and an integer must index them. Without, integers are ids as written (from 0), and names are numbered in
    sorted order, so that the mapping does not depend on the order of the rows.
    """
    parsed = [(line, value, _integer(value), _name(value)) for line, value in values]
    for line, value, number, name in parsed:
        if number is None and name is None:
            raise where.error(line, field, f"label must be an integer or a name, got {value!r}")
    if known_names is not None:
        return [_known_id(number, name, known_names, where, line, field) for line, _, number, name in parsed], None
    if not parsed:
        return [], None
    first_line, _, first_number, _ = parsed[0]
    kind = "number" if first_number is not None else "name"
    for line, value, number, _ in parsed:
        if (number is not None) != (first_number is not None):
            raise where.error(
                line, field, f"label {value!r} is not a {kind} like the label at {where.unit} {first_line}: write "
                "every label as a number or every label as a name"
            )
    if first_number is not None:
        return [_in_range(number, None, where, line, field) for line, _, number, _ in parsed], None
    names = tuple(sorted({name for _, _, _, name in parsed}))
    position = {name: i for i, name in enumerate(names)}
    return [position[name] for _, _, _, name in parsed], names
