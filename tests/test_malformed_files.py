"""A property of every supported input format: a file, however malformed, is either accepted clean or refused with a
P2PError that names the file (and, when it names a line, a line the file has). Never another exception, which the
user would see as a traceback. Files are generated well-formed and then damaged (cut short, bytes inserted, a BOM,
an invalid UTF-8 byte); Parquet files get columns of every type and damaged bytes."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from poison2poison.api import task_for
from poison2poison.config import DefenseConfig
from poison2poison.data.catalog import read_user_data
from poison2poison.data.readers import read_texts
from poison2poison.datachecks import check_classification_data
from poison2poison.errors import DataFormatError, P2PError

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELD_NAMES = st.sampled_from(["text", "sentence", "label", "labels", "x", "", "te\nxt", 'la"bel'])
TEXTS = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
LABEL_WORDS = st.sampled_from(["0", "1", " 2", "-1", "5", "positive", "negative", "1.0", "", " ", "true", "null"])
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2, 6), st.floats(allow_nan=True), TEXTS, LABEL_WORDS),
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(TEXTS, inner, max_size=2)), max_leaves=3,
)
DAMAGE_BYTES = st.sampled_from([b"\xff", b"\xef\xbb\xbf", b"\n", b"\r\n", b"\t", b",", b'"', b"{", b"\x00", b"\xc3"])


@st.composite
def damaged(draw: st.DrawFn, content: bytes) -> bytes:
    """The bytes, perhaps cut short, with bytes inserted, or behind a BOM."""
    if draw(st.booleans()):
        content = content[: draw(st.integers(0, len(content)))]
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(content)))
        content = content[:at] + draw(DAMAGE_BYTES) + content[at:]
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + content


@st.composite
def jsonl_files(draw: st.DrawFn) -> tuple[str, bytes]:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["row", "wild", "garbage", "blank", "not-object"]))
        if kind == "row":
            row = {"text": draw(TEXTS) or "fine film", "label": draw(st.sampled_from([0, 1, "positive", "negative"]))}
            lines.append(json.dumps(row, ensure_ascii=draw(st.booleans())))
        elif kind == "wild":
            lines.append(json.dumps(draw(st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=3))))
        elif kind == "garbage":
            lines.append(draw(TEXTS))
        elif kind == "not-object":
            lines.append(json.dumps(draw(JSON_VALUES)))
        else:
            lines.append("   ")
    suffix = draw(st.sampled_from([".jsonl", ".json"]))
    return suffix, draw(damaged("\n".join(lines).encode("utf-8")))


def _rows(draw: st.DrawFn) -> list[list[str]]:
    width = draw(st.integers(1, 3))
    return [[draw(st.one_of(TEXTS, LABEL_WORDS)) for _ in range(draw(st.sampled_from([width, width, width + 1])))]
            for _ in range(draw(st.integers(0, 6)))]


@st.composite
def tsv_files(draw: st.DrawFn) -> tuple[str, bytes]:
    rows = _rows(draw)
    if draw(st.booleans()):
        rows.insert(0, [draw(FIELD_NAMES) for _ in range(draw(st.integers(1, 3)))])
    text = "\n".join("\t".join(row) for row in rows)
    return draw(st.sampled_from([".tsv", ".txt"])), draw(damaged(text.encode("utf-8")))


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[str, bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([draw(FIELD_NAMES) for _ in range(draw(st.integers(1, 3)))])
    writer.writerows(_rows(draw))
    return ".csv", draw(damaged(buffer.getvalue().encode("utf-8")))


COLUMN_TYPES = {
    "string": (pa.string(), TEXTS), "label-word": (pa.string(), LABEL_WORDS), "int": (pa.int64(), st.integers(-2, 6)),
    "float": (pa.float64(), st.floats(allow_nan=True)), "bool": (pa.bool_(), st.booleans()),
    "list": (pa.list_(pa.int64()), st.lists(st.integers(0, 3), max_size=2)),
}


@st.composite
def parquet_files(draw: st.DrawFn) -> tuple[str, bytes]:
    rows = draw(st.integers(0, 5))
    columns = {}
    for name in draw(st.lists(st.sampled_from(["text", "label", "sentence", "x"]), max_size=3, unique=True)):
        kind, values = COLUMN_TYPES[draw(st.sampled_from(sorted(COLUMN_TYPES)))]
        columns[name] = pa.array([draw(st.one_of(st.none(), values)) for _ in range(rows)], type=kind)
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns) if columns else pa.table({"x": pa.array([], pa.int64())}), buffer)
    content = buffer.getvalue()
    return ".parquet", draw(damaged(content)) if draw(st.booleans()) else content


ANY_FILE = st.one_of(jsonl_files(), tsv_files(), csv_files(), parquet_files())


@contextmanager
def written(name: str, content: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        yield path


def refused_cleanly(exc: P2PError, path: Path, content: bytes) -> None:
    assert str(path) in str(exc), str(exc)
    if isinstance(exc, DataFormatError) and exc.line is not None and exc.path == str(path) and path.suffix != ".parquet":
        assert 1 <= exc.line <= content.count(b"\n") + 1, (exc.line, str(exc))


@SETTINGS
@given(ANY_FILE)
@example((".csv", b"label\r,\n"))  # a lone carriage return ends a line for the parser, not for the line count
def test_any_labelled_file_is_accepted_clean_or_refused_in_one_error(file: tuple[str, bytes]) -> None:
    suffix, content = file
    with written(f"data{suffix}", content) as path:
        try:
            rows = read_user_data(path)
            task = task_for(rows)
            labels = [e.label for e in rows.examples]
            check_classification_data(labels, task, DefenseConfig(name="p2p+"), str(path))
        except P2PError as exc:
            refused_cleanly(exc, path, content)
            return
        assert rows.examples and all(e.text and e.text == e.text.strip() for e in rows.examples)
        assert set(labels) == set(range(task.num_labels))  # every label has rows, none lies outside
        assert rows.label_names is None or len(rows.label_names) == task.num_labels


@SETTINGS
@given(st.one_of(jsonl_files(), csv_files(), parquet_files()))
def test_any_file_of_texts_to_predict_is_read_clean_or_refused_in_one_error(file: tuple[str, bytes]) -> None:
    suffix, content = file
    with written(f"inputs{suffix}", content) as path:
        try:
            texts = read_texts(path)
        except P2PError as exc:
            refused_cleanly(exc, path, content)
            return
        assert texts and all(t and t == t.strip() for t in texts)
