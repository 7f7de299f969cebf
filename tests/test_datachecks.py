"""The one data check before training: degenerate data is refused with what to change, before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poison2poison import defend, load_config, run_experiment
from poison2poison.config import DefenseConfig
from poison2poison.datachecks import check_classification_data, check_generation_data, check_samples
from poison2poison.errors import DataCheckError, DataFormatError
from poison2poison.prompting import Sample
from poison2poison.tasks import SENTIMENT, generic_task

P2P = DefenseConfig(name="p2p")


def labelled_file(path: Path, labels: list[object]) -> Path:
    path.write_text("".join(json.dumps({"text": f"row {i}", "label": y}) + "\n" for i, y in enumerate(labels)))
    return path


@pytest.mark.parametrize(
    ("labels", "task", "defense", "message"),
    [
        ([], generic_task(2), P2P, "no training rows"),
        ([1, 1, 1], generic_task(2), DefenseConfig(name="none"), "every training row has label 1"),
        ([0] * 20 + [5] * 20, generic_task(6), P2P, "no training rows of label 1, 2, 3, 4 (labels present: 0, 5"),
        ([1] * 20, SENTIMENT, DefenseConfig(name="none"), "every training row has label 1 ('positive')"),
        ([0, 1], generic_task(2), P2P, "benign subset would hold no row of label 0, 1 (label 0 has 1 row"),
        ([0] * 20 + [1] * 2, generic_task(2), P2P, "no row of label 1 (label 1 has 2 rows, and defense.rho 0.2"),
        ([0] * 20 + [1] * 20, generic_task(2), DefenseConfig(name="p2p", source="trusted"), "no trusted rows were given"),
    ],
)
def test_data_no_model_can_be_trained_on_is_refused(
    labels: list[int], task: object, defense: DefenseConfig, message: str
) -> None:
    with pytest.raises(DataCheckError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_classification_data(labels, task, defense, "mine.jsonl")  # type: ignore[arg-type]


def test_what_can_only_be_warned_about_is_returned_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert check_classification_data([0] * 40 + [1] * 40, SENTIMENT, P2P, "mine.jsonl") == []
    with caplog.at_level("WARNING"):
        warnings = check_classification_data([0] * 40 + [1] * 12, SENTIMENT, P2P, "mine.jsonl")
    assert warnings == ["the benign subset holds only 2 of label 1 ('positive') (fewer than 5): the benign context may "
                        "not be learned for those labels"]
    assert warnings[0] in caplog.text
    trusted = DefenseConfig(name="p2p", source="trusted")
    with pytest.raises(DataCheckError, match="the trusted rows .* have no row of label 1"):
        check_classification_data([0] * 40 + [1] * 40, SENTIMENT, trusted, "mine.jsonl", trusted_labels=[0, 0])


def test_after_the_defense_every_output_needs_samples() -> None:
    samples = [Sample("a", 0), Sample("b", 2), Sample("c", 3)]  # no plain row of label 1 is left
    with pytest.raises(DataCheckError, match="no training sample has model output 1 after the defense left out 7 rows"):
        check_samples(samples, 4, "mine.jsonl", dropped=7)
    check_samples(samples + [Sample("d", 1)], 4, "mine.jsonl")


def test_generation_data_needs_rows_and_a_benign_subset() -> None:
    with pytest.raises(DataCheckError, match="no training rows"):
        check_generation_data(0, 10, P2P, "dataset 'gsm8k'")
    with pytest.raises(DataCheckError, match="benign subset would be empty"):
        check_generation_data(2, 10, P2P, "dataset 'gsm8k'")
    check_generation_data(2, 10, DefenseConfig(name="none"), "dataset 'gsm8k'")


@pytest.mark.parametrize(
    ("labels", "task", "error", "message"),
    [
        ([0, 1], None, DataCheckError, "benign subset would hold no row"),
        ([0] * 30, None, DataCheckError, "every training row has label 0"),
        ([0, 5] * 15, None, DataCheckError, "no training rows of label 1, 2, 3, 4"),
        ([0, 1, 1, 2], "sentiment", DataFormatError, r"line 4, field 'label': label 2 is out of range \(0..1\)"),
        (["positive", "good"], "sentiment", DataFormatError, r"line 2, field 'label': label 'good' is not one of"),
    ],
)
def test_defend_refuses_degenerate_data_before_it_writes_anything(
    tmp_path: Path, labels: list[object], task: str | None, error: type, message: str
) -> None:
    data = labelled_file(tmp_path / "mine.jsonl", labels)
    with pytest.raises(error, match=message):
        defend(data, "tiny", tmp_path / "out", load_config(None, ["defense.name=p2p"]), task=task)
    assert not (tmp_path / "out").exists()


def test_an_empty_generation_training_file_is_refused_with_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "train.jsonl").write_text("")
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "1+1?", "answer": "2\\n#### 2"}\n')
    monkeypatch.setenv("P2P_DATA_DIR", str(tmp_path))
    with pytest.raises(DataFormatError, match=r"gsm8k/train.jsonl: no rows \(the file is empty or blank\)"):
        run_experiment(load_config(None, ["data.dataset=gsm8k", "attack.name=badchain", "defense.name=p2p"]),
                       tmp_path / "out")
    assert not (tmp_path / "out").exists()
