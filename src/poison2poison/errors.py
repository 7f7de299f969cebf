"""Errors the CLI turns into one clear line each."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def one_line(text: str) -> str:
    """A message on one line: the CLI prints each error as one, and other libraries' messages may span several."""
    return " ".join(text.split())


class P2PError(Exception):
    """Base class for every error the library raises on purpose."""


class ConfigError(P2PError):
    """A configuration value is missing, unknown or inconsistent."""


class DataNotFoundError(P2PError):
    """A named dataset could be found neither locally nor on the hub."""


class DataFormatError(P2PError):
    """A data file is malformed; the message names the file, the line and the field.

    `unit` says what `line` counts: a line of a text file, or a row of a table (Parquet, a hub dataset).
    """

    def __init__(
        self, path: str | Path, line: int | None, field: str | None, problem: str, unit: str = "line"
    ) -> None:
        self.path, self.line, self.field, self.problem = str(path), line, field, problem
        where = self.path
        if line is not None:
            where += f", {unit} {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {problem}")


class DataCheckError(P2PError):
    """Well-formed data that cannot train the model as configured (one class, an empty class, no benign subset)."""


class RunDirError(P2PError):
    """An output folder holds another run's results or work, or was changed by hand; the message says how to proceed."""


class ModelSetupError(P2PError):
    """A model cannot serve the task as configured (for example, clashing verbalizer tokens)."""


def validation_problems(exc: Any) -> str:
    """Every field a pydantic `ValidationError` refused, as 'dotted.field: message'."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
