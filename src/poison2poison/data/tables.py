"""Tables as records, each with the line or row it came from: CSV and TSV through pyarrow's CSV parser, Parquet
through pyarrow, and the UTF-8 check every text format shares.

Every value of a delimited file is read as a string (a text `42` stays text); the reader of the labelled data decides
what a label is. Errors name the file and the line (the line a record starts on, for records that span lines).
"""

from __future__ import annotations

import io
import re
import stat
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet

from ..errors import DataFormatError, DataNotFoundError, one_line

Record = tuple[int, dict[str, Any]]
"""(line or row number, 1-based; the record's fields)"""

BOM = "\ufeff"
LINE_BREAK = re.compile(r"\r\n|\r|\n")
"""A line break as the CSV parser reads one: a lone carriage return ends a line too."""


def existing_file(path: Path) -> Path:
    """The path, once it is known to name a file: a missing path, a directory and a path the system refuses (too
    long, no permission) each get their own error."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataFormatError(path, None, None, f"cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise DataFormatError(path, None, None, "is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise DataNotFoundError(f"{path}: no such file")
    return path


def utf8_text(path: Path) -> str:
    """The file's text, without a leading byte-order mark; a clear error for bytes that are not UTF-8."""
    raw = existing_file(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        start = raw.rfind(b"\n", 0, exc.start) + 1
        raise DataFormatError(
            path, line, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start - start} of the line)"
        ) from exc
    return text[1:] if text.startswith(BOM) else text


def no_rows(path: Path) -> DataFormatError:
    return DataFormatError(path, None, None, "no rows (the file is empty or blank)")


def _parser_lines(text: str) -> tuple[list[str], list[int]]:
    """The lines as the parser splits them (`LINE_BREAK`), and the 1-based line of the file, counted by newlines
    as editors count them, that each one starts on."""
    lines, numbers, number, start = [], [], 1, 0
    for brk in LINE_BREAK.finditer(text):
        lines.append(text[start:brk.start()])
        numbers.append(number)
        number += brk.group().endswith("\n")
        start = brk.end()
    return [*lines, text[start:]], [*numbers, number]


def _start_lines(text: str, spans: Sequence[int]) -> list[int]:
    """The line of the file each row starts on, given the parser lines each row spans; the empty lines the parser
    skips between rows are skipped here too."""
    lines, numbers = _parser_lines(text)
    starts, i = [], 0
    for span in spans:
        while i < len(lines) - 1 and not lines[i]:
            i += 1
        starts.append(numbers[min(i, len(lines) - 1)])
        i += span
    return starts


def _span(values: Sequence[Any]) -> int:
    return 1 + sum(len(LINE_BREAK.findall(str(v))) for v in values)


def _parse_options(delimiter: str, quoted: bool, on_invalid: Any) -> pa_csv.ParseOptions:
    return pa_csv.ParseOptions(
        delimiter=delimiter, quote_char='"' if quoted else False, newlines_in_values=quoted,
        invalid_row_handler=on_invalid,
    )


def _header(data: bytes, delimiter: str, quoted: bool) -> list[str]:
    """The column names on the first line (or lines: a quoted name may span lines), as the parser reads them."""
    return pa_csv.read_csv(
        io.BytesIO(data), parse_options=_parse_options(delimiter, quoted, lambda row: "skip"),
        read_options=pa_csv.ReadOptions(use_threads=False), convert_options=pa_csv.ConvertOptions(include_columns=[]),
    ).schema.names


def _unique(path: Path, names: list[str]) -> list[str]:
    for name in names:
        if name and names.count(name) > 1:
            raise DataFormatError(path, 1, name, "the header names this column twice")
    return names


def _column_problem(row: Any, delimiter: str) -> str:
    """What is wrong with a row of another width, with the likely cause where a TSV line holds no tab at all."""
    if delimiter != "\t":
        return f"expected {row.expected_columns} columns, got {row.actual_columns}"
    problem = f"expected {row.expected_columns} tab-separated columns, got {row.actual_columns}"
    if row.actual_columns == 1 and "," in row.text:
        problem += " (the line has no tab but has commas: if the file is comma-separated, name it .csv)"
    return problem


def read_delimited(
    path: Path, delimiter: str = ",", quoted: bool = True, column_names: Sequence[str] | None = None,
    header: bool = True,
) -> tuple[list[str], list[Record]]:
    """(column names, records) of a CSV (`quoted`: values may be quoted and span lines) or TSV file.

    The first line is a header unless `header` is false (then `column_names` must name the columns); with both, the
    columns take `column_names` and the header line is skipped. A row with another number of columns is an error at its line.
    """
    text = utf8_text(path)
    if not text.strip():
        raise no_rows(path)
    data = text.encode("utf-8")
    invalid: list[Any] = []

    def keep_invalid(row: Any) -> str:
        invalid.append(row)
        return "skip"

    try:
        # Named columns replace a header only in unquoted files, whose header is one line to skip.
        raw_names = list(column_names) if column_names is not None else _header(data, delimiter, quoted)
        table = pa_csv.read_csv(
            io.BytesIO(data), parse_options=_parse_options(delimiter, quoted, keep_invalid),
            read_options=pa_csv.ReadOptions(
                use_threads=False, column_names=column_names, skip_rows=1 if header and column_names else 0
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in raw_names}, strings_can_be_null=False
            ),
        )
    except pa.ArrowException as exc:
        raise DataFormatError(path, None, None, f"not a readable table ({one_line(str(exc))})") from exc
    names = _unique(path, [name.strip() for name in raw_names])
    rows = list(zip(*(column.to_pylist() for column in table.columns)))
    header_span = ([_span(raw_names)] if column_names is None else [1]) if header else []
    if invalid:
        first = invalid[0]
        before = first.number - 1 - len(header_span)  # rows are numbered from the header, valid ones in order
        spans = header_span + [_span(row) for row in rows[:before]] + [_span([first.text])]
        raise DataFormatError(path, _start_lines(text, spans)[-1], None, _column_problem(first, delimiter))
    starts = _start_lines(text, header_span + [_span(row) for row in rows])[len(header_span):]
    records = [(line, dict(zip(names, row))) for line, row in zip(starts, rows)]
    if not records:
        raise no_rows(path)
    return names, records


def read_parquet(path: Path) -> tuple[list[str], list[Record]]:
    """(column names, records) of a Parquet file; a record's number is its row (from 1)."""
    try:
        table = pa_parquet.read_table(existing_file(path))
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(path, None, None, f"not a readable Parquet file ({one_line(str(exc))})") from exc
    records = list(enumerate(table.to_pylist(), start=1))
    if not records:
        raise no_rows(path)
    return _unique(path, table.schema.names), records
