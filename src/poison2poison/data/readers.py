"""Readers for the data formats we accept, as the public files are written.

Every reader validates each record and raises DataFormatError naming the file, the line and the field.
Nothing is dropped silently.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataFormatError
from .types import Example


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text) with a clear error for a line that is not UTF-8."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFormatError(path, number, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
            yield number, line.rstrip("\r\n")


def _read_text(path: Path) -> str:
    for _ in _decoded_lines(path):  # validates the encoding line by line first
        pass
    return path.read_text(encoding="utf-8")


def parse_label(value: Any, path: Path, line: int | None, field: str, num_labels: int | None) -> int:
    """Labels are integers (possibly written with spaces, as in the AG News TSV) in [0, num_labels)."""
    if isinstance(value, bool):
        raise DataFormatError(path, line, field, f"label must be an integer, got {value!r}")
    if isinstance(value, int):
        label = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        label = int(value.strip())
    else:
        raise DataFormatError(path, line, field, f"label must be an integer, got {value!r}")
    if label < 0 or (num_labels is not None and label >= num_labels):
        allowed = f"0..{num_labels - 1}" if num_labels is not None else ">= 0"
        raise DataFormatError(path, line, field, f"label {label} is out of range ({allowed})")
    return label


def parse_text(value: Any, path: Path, line: int | None, field: str) -> str:
    text = _string(value, path, line, field).strip()
    if not text:
        raise DataFormatError(path, line, field, "text is empty")
    return text


def _require(record: dict[str, Any], field: str, path: Path, line: int | None) -> Any:
    if field not in record:
        raise DataFormatError(path, line, field, f"missing field (present: {', '.join(sorted(record)) or 'none'})")
    return record[field]


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Every non-blank line of a JSONL file as (line number, object)."""
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
    return rows


def read_labeled_jsonl(
    path: str | Path, text_field: str | None = "sentence", label_field: str = "label", num_labels: int | None = None
) -> list[Example]:
    """JSONL of {sentence, label} (the SST-2 files). text_field=None accepts `sentence` or `text`, by the first row."""
    path = Path(path)
    rows = read_jsonl(path)
    if text_field is None:
        text_field = "text" if rows and "text" in rows[0][1] and "sentence" not in rows[0][1] else "sentence"
    return [
        Example(
            parse_text(_require(obj, text_field, path, n), path, n, text_field),
            parse_label(_require(obj, label_field, path, n), path, n, label_field, num_labels),
        )
        for n, obj in rows
    ]


def _looks_like_header(fields: list[str]) -> bool:
    return not fields[-1].strip().lstrip("-").isdigit()


def read_labeled_tsv(
    path: str | Path, header: bool | None = None, num_labels: int | None = None, allow_empty: bool = False
) -> list[Example]:
    """TSV of `text<TAB>label`, with or without a header line (None: detect it from a non-integer last field).

    Fields may carry padding spaces (`' 2'`) and lines may end in CRLF; both are accepted. allow_empty keeps
    rows whose text is empty (row-aligned files, where dropping one would shift every later row).
    """
    path = Path(path)
    examples: list[Example] = []
    for number, line in _decoded_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if number == 1 and (header or (header is None and _looks_like_header(fields))):
            continue
        if len(fields) < 2:
            raise DataFormatError(path, number, "label", "missing field (no tab-separated label)")
        text, label = "\t".join(fields[:-1]), fields[-1]
        text = text.strip() if allow_empty else parse_text(text, path, number, "sentence")
        examples.append(Example(text, parse_label(label, path, number, "label", num_labels)))
    return examples


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
            _require(obj, field, path, index)
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


def _string(value: Any, path: Path, line: int | None, field: str) -> str:
    """A string field that may be empty (the Alpaca `input`)."""
    if not isinstance(value, str):
        raise DataFormatError(path, line, field, f"expected a string, got {type(value).__name__}")
    return value


def read_gsm8k(path: str | Path) -> list[dict[str, str]]:
    """GSM8K JSONL of {question, answer}; the answer must end with a `#### N` line."""
    path = Path(path)
    out = []
    for n, obj in read_jsonl(path):
        question = parse_text(_require(obj, "question", path, n), path, n, "question")
        answer = parse_text(_require(obj, "answer", path, n), path, n, "answer")
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
            "id": str(_require(obj, "id", path, n)),
            "document": _string(_require(obj, "document", path, n), path, n, "document").strip(),
            "summary": parse_text(_require(obj, "summary", path, n), path, n, "summary"),
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


def read_texts(path: str | Path) -> list[str]:
    """Inputs to predict: a .txt file (one text per non-blank line) or JSONL with `sentence` or `text`."""
    path = Path(path)
    if path.suffix == ".jsonl":
        out = []
        for n, obj in read_jsonl(path):
            field = "sentence" if "sentence" in obj else "text"
            out.append(parse_text(_require(obj, field, path, n), path, n, field))
        return out
    return [line.strip() for _, line in _decoded_lines(path) if line.strip()]
