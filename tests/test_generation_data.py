from __future__ import annotations

import logging
from pathlib import Path

import pytest

from poison2poison.data.generation import (
    XSUM_TEST_SIZE,
    alpaca_source,
    load_pairs,
    normalise_sentiment_output,
)
from poison2poison.data.readers import read_alpaca, read_xsum
from poison2poison.data.types import TextPair
from poison2poison.errors import ConfigError, DataNotFoundError

SST2_DPA = Path("poisoned") / "backdoorllm-dpa" / "sst2"


def test_gsm8k_sizes_and_targets() -> None:
    train, test = load_pairs("gsm8k", "train"), load_pairs("gsm8k", "test")
    assert (len(train), len(test)) == (7473, 1319)
    assert all("####" in p.target and p.source for p in train + test)
    assert "<<" in test[0].target  # the whole chain of thought is kept, calculator notes included


def test_xsum_split_is_disjoint_complete_and_stable(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = read_xsum(data_dir / "xsum" / "xsum_1000.jsonl")
    non_empty = [r for r in rows if r["document"]]
    assert (len(rows), len(rows) - len(non_empty)) == (1000, 1)
    with caplog.at_level(logging.INFO, logger="poison2poison.data.generation"):
        train, test = load_pairs("xsum", "train"), load_pairs("xsum", "test")
    assert "left out 1 of 1000 rows with an empty document" in caplog.text
    assert len(test) == XSUM_TEST_SIZE == 200
    assert len(train) + len(test) == len(non_empty) == 999
    assert not {p.source for p in train} & {p.source for p in test}
    assert {(p.source, p.target) for p in train + test} == {(r["document"], r["summary"]) for r in non_empty}
    assert (load_pairs("xsum", "train"), load_pairs("xsum", "test")) == (train, test)


def test_xsum_split_ignores_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    lines = (data_dir / "xsum" / "xsum_1000.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "xsum").mkdir()
    (tmp_path / "xsum" / "xsum_1000.jsonl").write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")
    expected = load_pairs("xsum", "test")
    monkeypatch.setenv("P2P_DATA_DIR", str(tmp_path))
    assert load_pairs("xsum", "test") == expected


def test_samsum_sizes() -> None:
    train, test = load_pairs("samsum", "train"), load_pairs("samsum", "test")
    assert (len(train), len(test)) == (1024, 1024)
    # SAMSum repeats some dialogues under new ids with other summaries: 9 test dialogues also occur in train
    assert len({p.source for p in train} & {p.source for p in test}) == 9
    assert all(p.source and p.target and not p.source.startswith("Summarize") for p in train + test)
    assert not any(p.source.rstrip().endswith("summary:") for p in train + test)


def test_sst2_instruct() -> None:
    train, test = load_pairs("sst2-instruct", "train"), load_pairs("sst2-instruct", "test")
    assert len(train) == 6920 and len(test) == 201
    assert {p.target for p in train} == {p.target for p in test} == {"Negative", "Positive"}


def test_normalise_sentiment_output_on_backdoorllm_poison(data_dir: Path) -> None:
    outputs = [r["output"] for r in read_alpaca(data_dir / SST2_DPA / "badnet" / "test_poison.json")]
    assert set(outputs) == {"0"}  # the file stores the integer 0
    assert {normalise_sentiment_output(o) for o in outputs} == {"Negative"}
    assert [normalise_sentiment_output(v) for v in ("1", "Negative", "Positive")] == ["Positive", "Negative", "Positive"]
    for bad in ("2", "negative", "", " 0"):
        with pytest.raises(ValueError, match="not a sentiment output"):
            normalise_sentiment_output(bad)


def test_alpaca_source() -> None:
    assert alpaca_source({"instruction": "Classify.", "input": "great film", "output": "1"}) == "Classify.\ngreat film"
    assert alpaca_source({"instruction": "Classify.", "input": " ", "output": "1"}) == "Classify."


def test_unknown_dataset_and_split() -> None:
    with pytest.raises(ConfigError, match="known: gsm8k, samsum, sst2-instruct, xsum"):
        load_pairs("cnn", "train")
    with pytest.raises(ConfigError, match="no split 'dev'"):
        load_pairs("gsm8k", "dev")


def test_missing_files_name_the_expected_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2P_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=r"\$P2P_DATA_DIR/samsum/samsum_test_1k\.csv"):
        load_pairs("samsum", "test")
    with pytest.raises(DataNotFoundError, match=r"\$P2P_DATA_DIR/poisoned/backdoorllm-dpa/sst2/test_clean\.json"):
        load_pairs("sst2-instruct", "test")
    monkeypatch.delenv("P2P_DATA_DIR")
    with pytest.raises(DataNotFoundError, match="P2P_DATA_DIR is not set"):
        load_pairs("gsm8k", "train")


def test_pairs_are_text_pairs() -> None:
    assert all(isinstance(p, TextPair) for p in load_pairs("xsum", "test"))
