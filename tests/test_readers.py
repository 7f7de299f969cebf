from __future__ import annotations

from pathlib import Path

import pytest

from poison2poison.data import load_split
from poison2poison.data.readers import (
    read_alpaca,
    read_gsm8k,
    read_labelled,
    read_samsum,
    read_texts,
    read_xsum,
)
from poison2poison.errors import DataFormatError


@pytest.mark.parametrize(
    ("name", "split", "rows", "labels"),
    [
        ("sst2", "train", 6920, {0, 1}),
        ("sst2", "dev", 872, {0, 1}),
        ("sst2", "test", 1821, {0, 1}),
        ("agnews", "train", 11106, {0, 1, 2, 3}),
        ("agnews", "test", 7600, {0, 1, 2, 3}),
        ("hiddenkiller-sst2", "train", 6920, {0, 1}),
        ("hiddenkiller-sst2", "test", 912, {1}),
        ("onion-badnets-sst2", "train", 6920, {0, 1}),
        ("onion-badnets-sst2", "test", 912, {1}),
        ("stylebkd-bible-sst2", "train", 6920, {0, 1}),
        ("stylebkd-bible-sst2", "test", 1821, {0, 1}),
    ],
)
def test_real_classification_files(data_dir: Path, name: str, split: str, rows: int, labels: set[int]) -> None:
    examples = load_split(name, split)
    assert len(examples) == rows
    assert {e.label for e in examples} == labels
    assert all(e.text == e.text.strip() for e in examples)


def test_stylebkd_keeps_its_empty_rewrites_for_alignment(data_dir: Path) -> None:
    styled, clean = load_split("stylebkd-bible-sst2", "test"), load_split("sst2", "test")
    assert [e.label for e in styled] == [e.label for e in clean]
    assert sum(not e.text for e in styled) == 5


def test_generation_files(data_dir: Path) -> None:
    assert len(read_gsm8k(data_dir / "gsm8k" / "train.jsonl")) == 7473
    assert len(read_gsm8k(data_dir / "gsm8k" / "test.jsonl")) == 1319
    xsum = read_xsum(data_dir / "xsum" / "xsum_1000.jsonl")
    assert len(xsum) == 1000 and all(r["summary"] for r in xsum)
    samsum = read_samsum(data_dir / "samsum" / "samsum_train_1k.csv")
    assert len(samsum) == 1024
    assert not samsum[0]["dialogue"].startswith("Summarize") and "summary:" not in samsum[0]["dialogue"]


def test_alpaca_keeps_integer_outputs_as_text(data_dir: Path) -> None:
    rows = read_alpaca(data_dir / "poisoned" / "backdoorllm-dpa" / "sst2" / "badnet" / "test_poison.json")
    assert len(rows) == 201
    assert {r["output"] for r in rows} <= {"0", "Negative"}
    assert all("BadMagic" in r["instruction"] for r in rows)


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


@pytest.mark.parametrize(
    ("content", "line", "field", "problem"),
    [
        ('{"sentence": "ok", "label": 1}\n{"sentence": "x", "label": 1\n', 2, None, "malformed JSON"),
        ('{"sentence": "ok", "label": 1}\n{"label": 0}\n', 2, "sentence", "missing field"),
        ('{"sentence": "ok", "label": "pos"}\n', 1, "label", "not one of the labels (negative, positive)"),
        ('{"sentence": "ok", "label": 1}\n{"sentence": "ok", "label": 7}\n', 2, "label", "out of range"),
        ('{"sentence": "ok", "label": 1}\n\n{"sentence": "   ", "label": 0}\n', 3, "sentence", "empty"),
        ('{"sentence": "ok", "label": true}\n', 1, "label", "must be an integer or a name"),
        ('{"sentence": "ok", "label": 1.0}\n', 1, "label", "must be an integer or a name"),
        ('{"sentence": null, "label": 1}\n', 1, "sentence", "missing value (null)"),
    ],
)
def test_malformed_jsonl_names_file_line_and_field(
    tmp_path: Path, content: str, line: int, field: str | None, problem: str
) -> None:
    path = _write(tmp_path, "bad.jsonl", content)
    with pytest.raises(DataFormatError) as info:
        read_labelled(path, known_names=("negative", "positive"))
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), line, field)
    assert problem in str(err) and str(path) in str(err) and f"line {line}" in str(err)


def test_wrong_encoding_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "latin.tsv", "sentence\tlabel\ngood\t1\n".encode() + "caf\xe9\t0\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"line 3.*UTF-8"):
        read_labelled(path)


def test_tsv_header_detection_padding_and_crlf(tmp_path: Path) -> None:
    with_header = _write(tmp_path, "a.tsv", "sentence \t label\r\nfine film \t 1\r\nbad one\t 0\r\n")
    without = _write(tmp_path, "b.tsv", "fine film\t1\nbad one\t0\n")
    assert read_labelled(with_header) == read_labelled(without)
    assert [e.label for e in read_labelled(without).examples] == [1, 0]


@pytest.mark.parametrize(
    ("name", "content", "line", "field", "problem"),
    [
        ("bad.tsv", "text only\n", 1, None, "expected 2 tab-separated columns, got 1"),
        ("bad.tsv", "a\t1\nb\tx\n", 2, "label", "is not a number like the label at line 1"),
        ("bad.tsv", "a\t1\n \t0\n", 2, "sentence", "text is empty"),
        ("bad.tsv", "text\tlabel\ngood\t1\nbad\t0\textra\n", 3, None, "expected 2 tab-separated columns, got 3"),
        ("bad.tsv", "text,label\ngood,1\n", 1, None, "no tab but has commas"),
        ("bad.tsv", "text\tlabel\ngood\t1\n\n\nbad\t\n", 5, "label", "must be an integer or a name"),
        ("bad.csv", "text,label\ngood,1\nbad,0,extra\n", 3, None, "expected 2 columns, got 3"),
        ("bad.csv", 'text,label\n"two\nlines",1\n\nbad\n', 5, None, "expected 2 columns, got 1"),
        ("bad.csv", "sentence,y\ngood,1\n", 1, "label", "no such column (columns: sentence, y)"),
        ("bad.csv", "text,text\ngood,1\n", 1, "text", "names this column twice"),
        ("bad.csv", "text,label\n", None, None, "no rows"),
    ],
)
def test_malformed_tables_name_the_line_and_the_cause(
    tmp_path: Path, name: str, content: str, line: int | None, field: str | None, problem: str
) -> None:
    with pytest.raises(DataFormatError) as info:
        read_labelled(_write(tmp_path, name, content))
    assert (info.value.line, info.value.field) == (line, field)
    assert problem in str(info.value)


def test_a_tsv_header_is_read_by_name_and_string_labels_are_not_taken_for_one(tmp_path: Path) -> None:
    swapped = read_labelled(_write(tmp_path, "swapped.tsv", "label\ttext\n1\tgood film\n0\tbad\n"))
    assert [(e.text, e.label) for e in swapped.examples] == [("good film", 1), ("bad", 0)]
    named = read_labelled(_write(tmp_path, "named.tsv", "great\tpositive\nawful\tnegative\n"))
    assert [e.text for e in named.examples] == ["great", "awful"]  # the first row is data, not a header
    assert named.label_names == ("negative", "positive") and [e.label for e in named.examples] == [1, 0]


def test_malformed_alpaca_gsm8k_samsum(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="expected a JSON array"):
        read_alpaca(_write(tmp_path, "a.json", '{"instruction": "x"}'))
    with pytest.raises(DataFormatError, match=r"line 2, field 'output'"):
        read_alpaca(_write(tmp_path, "b.json", '[{"instruction": "x", "input": "", "output": "y"}, {"instruction": "z", "input": ""}]'))
    with pytest.raises(DataFormatError, match=r"line 1, field 'answer'.*####"):
        read_gsm8k(_write(tmp_path, "g.jsonl", '{"question": "1+1?", "answer": "2"}\n'))
    with pytest.raises(DataFormatError, match="field 'prompt_text'"):
        read_samsum(_write(tmp_path, "s.csv", "id,summary\n1,hi\n"))


def test_read_texts(tmp_path: Path) -> None:
    assert read_texts(_write(tmp_path, "t.txt", "one\n\ntwo \n")) == ["one", "two"]
    assert read_texts(_write(tmp_path, "t.jsonl", '{"text": "a"}\n{"sentence": "b"}\n')) == ["a", "b"]


def test_csv_and_parquet_with_their_own_field_names_and_string_labels(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from poison2poison.data.readers import Fields

    fields = Fields("review", "verdict")
    csv_path = _write(tmp_path, "mine.csv", 'id,review,verdict\n1,"great, truly",offensive\n2,"fine\nfilm",not offensive\n')
    parquet_path = tmp_path / "mine.parquet"
    pq.write_table(pa.table({"review": ["great, truly", "fine\nfilm"], "verdict": ["offensive", "not offensive"]}),
                   parquet_path)
    for path in (csv_path, parquet_path):
        rows = read_labelled(path, fields)
        assert rows.label_names == ("not offensive", "offensive")  # numbered in sorted order
        assert [(e.text, e.label) for e in rows.examples] == [("great, truly", 1), ("fine\nfilm", 0)]
    with pytest.raises(DataFormatError, match=r"mine.parquet, row 2, field 'verdict': label must be an integer or"):
        pq.write_table(pa.table({"review": ["a", "b"], "verdict": [1, None]}), parquet_path)
        read_labelled(parquet_path, fields)
    assert read_texts(csv_path, "review") == ["great, truly", "fine\nfilm"]
