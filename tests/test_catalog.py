from __future__ import annotations

from pathlib import Path

import pytest

from poison2poison.data import load_split, read_user_data
from poison2poison.errors import DataFormatError, DataNotFoundError


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(DataNotFoundError, match="known: agnews, hiddenkiller-sst2"):
        load_split("imdb", "train")


def test_missing_local_copy_says_what_to_provide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2P_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=r"\$P2P_DATA_DIR/poisoned/hiddenkiller-sst2/train.tsv"):
        load_split("hiddenkiller-sst2", "train")
    with pytest.raises(DataNotFoundError, match="SetFit/sst2"):  # the hub is unreachable in tests
        load_split("sst2", "train")
    monkeypatch.delenv("P2P_DATA_DIR")
    with pytest.raises(DataNotFoundError, match="P2P_DATA_DIR is not set"):
        load_split("onion-badnets-sst2", "test")


def test_local_folder_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "dev.jsonl").write_text('{"sentence": "fine", "label": 1}\n')
    monkeypatch.setenv("P2P_DATA_DIR", str(tmp_path))
    assert [e.label for e in load_split("sst2", "dev")] == [1]


def test_user_files(tmp_path: Path) -> None:
    tsv = tmp_path / "mine.tsv"
    tsv.write_text("great\t1\nawful\t0\n")
    assert [e.text for e in read_user_data(tsv).examples] == ["great", "awful"]
    (tmp_path / "x.xlsx").write_text("a,1\n")
    with pytest.raises(DataFormatError, match="unsupported extension '.xlsx'"):
        read_user_data(tmp_path / "x.xlsx")


def test_a_hub_dataset_id_without_network_says_what_it_needs() -> None:
    with pytest.raises(DataNotFoundError, match=r"the hub dataset 'someone/reviews' \(split 'test'\) could not be loaded"):
        read_user_data("hub:someone/reviews:test")
