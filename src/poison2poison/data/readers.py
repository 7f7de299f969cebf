"""Readers for the data formats we accept, as the public files are written and as users have them.

Every reader validates each record and raises DataFormatError naming the file, the line and the field.
Nothing is dropped silently. Labelled data comes as JSONL (`.jsonl`, `.json`), TSV (`.tsv`, `.txt`), CSV or
Parquet, through one path: records, then the text and label fields, then label ids (data/labels.py).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..errors import DataFormatError
from .labels import Where, label_ids
from .tables import Record, existing_file, no_rows, read_delimited, read_parquet, utf8_text
from .types import Example


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text) of every line, with a clear error for bytes that are not UTF-8."""
    for number, line in enumerate(utf8_text(path).split("\n"), start=1):
        yield number, line.rstrip("\r")


def _read_text(path: Path) -> str:
    """The text with universal newlines, as Python reads it (and no byte-order mark), once the bytes are known to be
    UTF-8."""
    utf8_text(path)
    return path.read_text(encoding="utf-8-sig")


def parse_text(value: Any, path: Path, line: int | None, field: str, unit: str = "line") -> str:
    text = _string(value, path, line, field, unit).strip()
    if not text:
        raise DataFormatError(path, line, field, "text is empty", unit)
    return text


def require_field(record: dict[str, Any], field: str, path: Path, line: int | None, unit: str = "line") -> Any:
    if field not in record:
        raise DataFormatError(
            path, line, field, f"missing field (present: {', '.join(sorted(record)) or 'none'})", unit
        )
    return record[field]


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Every non-blank line of a JSONL file as (line number, object); a file with none is an error."""
    path = Path(path)
    rows = []
    for number, line in _decoded_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(path, number, None, f"malformed JSON ({exc.msg}, column {exc.colno})") from exc
        if not isinstance(obj, dict):
            raise DataFormatError(path, number, None, f"expected a JSON object, got {type(obj).__name__}")
        rows.append((number, obj))
    if not rows:
        raise no_rows(path)
    return rows


@dataclass(frozen=True)
class Fields:
    """The record fields that hold the text and the label. `text` None: `sentence` where the data has it, else
    `text` (the two names the public files use)."""

    text: str | None = None
    label: str = "label"

    def text_in(self, names: Iterable[str]) -> str:
        if self.text is not None:
            return self.text
        names = set(names)
        return "text" if "text" in names and "sentence" not in names else "sentence"


@dataclass(frozen=True)
class LabelledRows:
    """Labelled examples, and the names their labels were written as (None: integer labels, used as ids)."""

    examples: list[Example]
    label_names: tuple[str, ...] | None = None


def _looks_like_header(fields: list[str]) -> bool:
    return not fields[-1].strip().lstrip("-").isdigit()


def _tsv_header(path: Path, fields: Fields) -> list[str] | None:
    """The column names on a TSV's first line, or None when it has no header. A first line is a header when it
    names the label or text field, or when its last column is not an integer while the next line's is (the public
    files' `sentence<TAB>label` and `sentences<TAB>labels`); string labels then make no header of a first row."""
    lines = [line.split("\t") for _, line in _decoded_lines(path) if line.strip()][:2]
    if not lines:
        return None
    names = [name.strip() for name in lines[0]]
    if {fields.label, fields.text} & set(names):
        return names
    if len(lines) == 2 and _looks_like_header(lines[0]) and not _looks_like_header(lines[1]):
        return names
    return None


def _tsv_records(path: Path, fields: Fields) -> tuple[list[str], list[Record]]:
    """A TSV of `text<TAB>label` (the public files) or with a header that names its columns; no quoting, as the
    public files are written. A two-column header that names neither field is read by position."""
    header = _tsv_header(path, fields)
    if header is not None and fields.label in header:
        return read_delimited(path, "\t", quoted=False)
    positional = [fields.text or "sentence", fields.label]
    return read_delimited(path, "\t", quoted=False, column_names=positional, header=header is not None)


SUPPORTED = ".jsonl, .json, .csv, .tsv, .txt or .parquet"


def read_records(path: str | Path, fields: Fields = Fields()) -> tuple[list[str] | None, list[Record], Where]:
    """(column names where the format has them, records, where they come from) of a file, by its extension."""
    path = existing_file(Path(path))
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return None, read_jsonl(path), Where(path)
    if suffix == ".csv":
        return (*read_delimited(path), Where(path))
    if suffix in (".tsv", ".txt"):
        return (*_tsv_records(path, fields), Where(path))
    if suffix == ".parquet":
        return (*read_parquet(path), Where(path, "row"))
    raise DataFormatError(path, None, None, f"unsupported extension '{path.suffix}' (use {SUPPORTED})")


def labelled_examples(
    records: Sequence[Record], where: Where, fields: Fields, columns: Sequence[str] | None = None,
    known_names: Sequence[str] | None = None, allow_empty: bool = False,
) -> LabelledRows:
    """Examples from records: the text field (not empty unless `allow_empty`, for row-aligned files) and the label
    field, mapped to ids (see `data.labels.label_ids` for `known_names`)."""
    path, unit = Path(where.path), where.unit
    text_field = fields.text_in(columns if columns is not None else records[0][1] if records else ())
    if columns is not None:
        for field in (text_field, fields.label):
            if field not in columns:
                raise where.error(1 if unit == "line" else None, field,
                                  f"no such column (columns: {', '.join(columns) or 'none'})")
    texts, labels = [], []
    for n, obj in records:
        value = require_field(obj, text_field, path, n, unit)
        texts.append(_string(value, path, n, text_field, unit).strip() if allow_empty
                     else parse_text(value, path, n, text_field, unit))
        labels.append((n, require_field(obj, fields.label, path, n, unit)))
    ids, names = label_ids(labels, where, fields.label, known_names)
    return LabelledRows([Example(t, y) for t, y in zip(texts, ids)], names)


def read_labelled(
    path: str | Path, fields: Fields = Fields(), known_names: Sequence[str] | None = None, allow_empty: bool = False
) -> LabelledRows:
    """A labelled file of any supported format (see `read_records`)."""
    columns, records, where = read_records(path, fields)
    return labelled_examples(records, where, fields, columns, known_names, allow_empty)


def read_json_array(path: str | Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, Any]]]:
    """A JSON array of objects (the Alpaca format), as (record index, object); the 'line' in errors is the record."""
    path = Path(path)
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, exc.lineno, None, f"malformed JSON ({exc.msg})") from exc
    if not isinstance(data, list):
        raise DataFormatError(path, 1, None, f"expected a JSON array, got {type(data).__name__}")
    rows = []
    for index, obj in enumerate(data, start=1):
        if not isinstance(obj, dict):
            raise DataFormatError(path, index, None, f"record {index} is not an object")
        for field in required:
            require_field(obj, field, path, index)
        rows.append((index, obj))
    return rows


def read_alpaca(path: str | Path) -> list[dict[str, str]]:
    """Alpaca JSON array of {instruction, input, output}. A non-string output (the integer 0 in some test files)
    is kept as its string form; the caller that knows the task decides how to normalise it."""
    path = Path(path)
    out = []
    for index, obj in read_json_array(path, ("instruction", "input", "output")):
        out.append(
            {
                "instruction": parse_text(obj["instruction"], path, index, "instruction"),
                "input": _string(obj["input"], path, index, "input"),
                "output": str(obj["output"]),
            }
        )
    return out


def _string(value: Any, path: Path, line: int | None, field: str, unit: str = "line") -> str:
    """A string field that may be empty (the Alpaca `input`)."""
    if value is None:
        raise DataFormatError(path, line, field, "missing value (null)", unit)
    if not isinstance(value, str):
        raise DataFormatError(path, line, field, f"expected a string, got {type(value).__name__}", unit)
    return value


def read_gsm8k(path: str | Path) -> list[dict[str, str]]:
    """GSM8K JSONL of {question, answer}; the answer must end with a `#### N` line."""
    path = Path(path)
    out = []
    for n, obj in read_jsonl(path):
        question = parse_text(require_field(obj, "question", path, n), path, n, "question")
        answer = parse_text(require_field(obj, "answer", path, n), path, n, "answer")
        if "####" not in answer:
            raise DataFormatError(path, n, "answer", "no '#### N' final-answer line")
        out.append({"question": question, "answer": answer})
    return out


def read_xsum(path: str | Path) -> list[dict[str, str]]:
    """XSum JSONL of {id, document, summary}. The public file has rows with an empty document; they are kept
    (as "") so that row counts and ids stay as published, and the task that uses them decides."""
    path = Path(path)
    return [
        {
            "id": str(require_field(obj, "id", path, n)),
            "document": _string(require_field(obj, "document", path, n), path, n, "document").strip(),
            "summary": parse_text(require_field(obj, "summary", path, n), path, n, "summary"),
        }
        for n, obj in read_jsonl(path)
    ]


SAMSUM_PREFIX = "dialogue:"
SAMSUM_SUFFIX = "summary:"


def read_samsum(path: str | Path) -> list[dict[str, str]]:
    """SAMSum CSV `id,summary,prompt_text`; the dialogue is taken out of the prompt wrapper.

    CSV records span lines, so the error 'line' is the line where the record starts.
    """
    path = Path(path)
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        header = next(reader)
    except StopIteration as exc:
        raise DataFormatError(path, 1, None, "empty file") from exc
    for field in ("id", "summary", "prompt_text"):
        if field not in header:
            raise DataFormatError(path, 1, field, "missing column in the header")
    out = []
    line = 2
    for record in reader:
        start = line
        line += sum(cell.count("\n") for cell in record) + 1
        if len(record) != len(header):
            raise DataFormatError(path, start, None, f"expected {len(header)} columns, got {len(record)}")
        row = dict(zip(header, record))
        prompt = row["prompt_text"]
        if SAMSUM_PREFIX not in prompt:
            raise DataFormatError(path, start, "prompt_text", f"no '{SAMSUM_PREFIX}' marker")
        dialogue = prompt.split(SAMSUM_PREFIX, 1)[1].rsplit(SAMSUM_SUFFIX, 1)[0]
        out.append(
            {
                "id": row["id"],
                "dialogue": parse_text(dialogue, path, start, "prompt_text"),
                "summary": parse_text(row["summary"], path, start, "summary"),
            }
        )
    return out


def required_text(record: dict[str, Any], field: str, where: Where, line: int | None) -> str:
    """A record's text field, present and not blank; else an error naming the file, the line (or row) and the field."""
    path = Path(where.path)
    return parse_text(require_field(record, field, path, line, where.unit), path, line, field, where.unit)


def read_texts(path: str | Path, text_field: str | None = None) -> list[str]:
    """Inputs to predict: a .txt file (one text per non-blank line), or records of any supported format whose
    `text_field` holds the text (by default `sentence` or `text`, row by row)."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        texts = [line.strip() for _, line in _decoded_lines(path) if line.strip()]
        if not texts:
            raise no_rows(path)
        return texts
    fields = Fields(text_field)
    _, records, where = read_records(path, fields)
    return [required_text(obj, fields.text_in(obj), where, n) for n, obj in records]
