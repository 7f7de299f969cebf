"""An output folder holds one run: its config and its data. A folder of another run is refused (with --force to
overwrite it), a folder changed by hand is not taken for the run it was, and a refused run writes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from poison2poison import DefendedModel, defend, load_config, run_experiment
from poison2poison.config import ExperimentConfig
from poison2poison.errors import DataFormatError, ModelSetupError, RunDirError
from poison2poison.io import read_json
from poison2poison.rundir import claim_run_dir

TINY = [
    "data.train_size=160", "data.test_size=40", "train.epochs=1", "train.batch_size=16", "train.learning_rate=0.001",
    "train.save_steps=5", "model.tiny_hidden_size=64", "model.tiny_layers=2", "model.tiny_vocab_size=600",
    "model.max_length=64", "attack.rate=0.05",
]
RUN = TINY + ["defense.name=p2p"]
DEFEND = TINY + ["defense.name=p2p", "defense.trigger=secret"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, dict[str, Any]]:
    run_dir = tmp_path_factory.mktemp("finished")
    return run_dir, run_experiment(load_config(None, RUN), run_dir)


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(run_dir, tmp_path / "copy")
    return tmp_path / "copy"


def user_rows(data_dir: Path, path: Path, flip: bool = False, names: bool = False) -> Path:
    """48 SST-2 dev rows as the user's own JSONL; `flip` swaps the labels (other data), `names` writes them as
    names."""
    rows = [json.loads(line) for line in (data_dir / "sst2" / "dev.jsonl").read_text().splitlines()[:48]]
    labels = [1 - r["label"] if flip else r["label"] for r in rows]
    path.write_text("".join(
        json.dumps({"text": r["sentence"], "label": ("negative", "positive")[y] if names else y}) + "\n"
        for r, y in zip(rows, labels)
    ))
    return path


def test_defend_into_a_folder_of_other_data_is_refused_and_force_overwrites_it(tmp_path: Path, data_dir: Path) -> None:
    """The reported case: a secret trigger and new data into the same folder used to keep the old weights under a
    manifest with a trigger the model had never seen."""
    config = load_config(None, DEFEND)
    out = defend(user_rows(data_dir, tmp_path / "a.jsonl"), "tiny", tmp_path / "out", config, task="sentiment")
    before = {p.name: p.read_bytes() for p in (out / "model").iterdir()} | {"p2p.json": (out / "p2p.json").read_bytes()}
    again = defend(user_rows(data_dir, tmp_path / "a2.jsonl"), "tiny", out, config, task="sentiment")  # same data
    assert again == out and (out / "p2p.json").read_bytes() == before["p2p.json"]  # found finished, not redone
    other = user_rows(data_dir, tmp_path / "b.jsonl", flip=True)
    with pytest.raises(RunDirError, match=r"finished run that is not this one: its data differs. Add --force"):
        defend(other, "tiny", out, config, task="sentiment")
    with pytest.raises(RunDirError, match="its config differs"):
        defend(user_rows(data_dir, tmp_path / "a3.jsonl"), "tiny", out, load_config(None, TINY), task="sentiment")
    assert {p.name: p.read_bytes() for p in (out / "model").iterdir()} | {"p2p.json": (out / "p2p.json").read_bytes()} \
        == before  # refused runs touched nothing
    defend(other, "tiny", out, config, task="sentiment", force=True)
    assert (out / "model" / "model.safetensors").read_bytes() != before["model.safetensors"]
    assert read_json(out / "p2p.json")["inference"]["trigger"] != json.loads(before["p2p.json"])["inference"]["trigger"]
    assert DefendedModel.load(out).predict(["a gripping film"])[0] in ("negative", "positive")


def test_string_labels_are_mapped_to_ids_and_predict_returns_their_names(tmp_path: Path, data_dir: Path) -> None:
    data = user_rows(data_dir, tmp_path / "named.jsonl", names=True)
    out = defend(data, "tiny", tmp_path / "out", load_config(None, TINY + ["defense.name=none"]), task="sentiment")
    assert read_json(out / "p2p.json")["label_names"] == ["negative", "positive"]
    assert set(DefendedModel.load(out).predict(["fine", "awful"])) <= {"negative", "positive"}
    with pytest.raises(RunDirError, match="its data differs"):  # the same rows with other labels are other data
        defend(user_rows(data_dir, tmp_path / "flipped.jsonl", flip=True, names=True), "tiny", out,
               load_config(None, TINY + ["defense.name=none"]), task="sentiment")


def test_a_run_refused_by_its_checks_writes_nothing_and_the_corrected_one_runs(tmp_path: Path) -> None:
    from poison2poison.errors import ConfigError

    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="trusted_size 100000 exceeds"):
        run_experiment(load_config(None, RUN + ["defense.trusted_size=100000"]), out)
    with pytest.raises(Exception, match="benign subset would hold no row"):
        run_experiment(load_config(None, RUN + ["data.train_size=4"]), out)
    assert not out.exists()


def claim(run_dir: Path, config: ExperimentConfig, data: str = "d") -> dict[str, Any] | None:
    return claim_run_dir(run_dir, config, {"train": data}, "metrics.json")


def test_a_folder_holding_only_the_set_up_of_another_run_is_taken_over(tmp_path: Path) -> None:
    """A run that stopped after claiming its folder, before any work, does not block a corrected command."""
    first, second = load_config(None, ["seed=1"]), load_config(None, ["seed=2"])
    assert claim(tmp_path, first) is None and (tmp_path / "run.json").is_file()
    (tmp_path / "log.txt").write_text("the first attempt's log\n")
    (tmp_path / "mine.txt").write_text("the user's own file\n")
    assert claim(tmp_path, second) is None  # taken over: the set-up was all it held
    assert "seed: 2" in (tmp_path / "config.yaml").read_text() and not (tmp_path / "log.txt").exists()
    (tmp_path / "train.json").write_text("{}")  # now it holds work
    with pytest.raises(RunDirError, match="unfinished run that is not this one: its config differs. Rerun the command"):
        claim(tmp_path, first)
    with pytest.raises(RunDirError, match="its data differs"):
        claim(tmp_path, second, data="other")
    assert claim(tmp_path, second) is None  # the same run continues
    assert claim_run_dir(tmp_path, first, {"train": "d"}, "metrics.json", force=True) is None
    assert not (tmp_path / "train.json").exists() and (tmp_path / "mine.txt").is_file()  # --force removes run files only


def test_a_config_edited_by_hand_is_not_taken_for_the_run(finished: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir = copy_of(finished[0], tmp_path)
    config_path = run_dir / "config.yaml"
    config_path.write_text(config_path.read_text().replace("seed: 0", "seed: 3"))
    for seed in (0, 3):
        with pytest.raises(RunDirError, match="its config.yaml is not the one its run.json records"):
            run_experiment(load_config(None, RUN + [f"seed={seed}"]), run_dir)


def test_a_damaged_run_record_is_one_clear_error(finished: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir = copy_of(finished[0], tmp_path)
    (run_dir / "run.json").write_text('{"config_sha256": "')
    with pytest.raises(DataFormatError, match=r"run.json, line 1: malformed JSON"):
        run_experiment(load_config(None, RUN), run_dir)


def test_without_its_run_record_a_finished_run_is_checked_by_its_metrics(finished: tuple[Path, dict], tmp_path: Path) -> None:
    """A run made before run.json existed (or whose run.json was removed) is still found finished when its metrics
    record the same data; without metrics it cannot be checked, and is refused."""
    run_dir, metrics = finished
    copy = copy_of(run_dir, tmp_path)
    (copy / "run.json").unlink()
    assert run_experiment(load_config(None, RUN), copy) == metrics
    (copy / "metrics.json").unlink()
    with pytest.raises(RunDirError, match="records no data hashes"):
        run_experiment(load_config(None, RUN), copy)


def test_a_model_swapped_in_from_another_run_is_trained_again(finished: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir, metrics = finished
    other = tmp_path / "other"
    run_experiment(load_config(None, TINY + ["defense.name=none"]), other)
    copy = copy_of(run_dir, tmp_path)
    (copy / "metrics.json").unlink()
    shutil.rmtree(copy / "model")
    shutil.copytree(other / "model", copy / "model")
    shutil.copy(other / "train.json", copy / "train.json")
    again = run_experiment(load_config(None, RUN), copy)
    assert "trained on other samples than this run's; training again" in (copy / "log.txt").read_text()
    assert again["clean_accuracy"] == metrics["clean_accuracy"] and again["train_loss"] == metrics["train_loss"]


def test_damaged_weights_are_one_clear_error(finished: tuple[Path, dict], tmp_path: Path) -> None:
    copy = copy_of(finished[0], tmp_path)
    weights = copy / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelSetupError, match="model.safetensors"):  # the manifest's binding notices first
        DefendedModel.load(copy)
    (copy / "metrics.json").unlink()
    with pytest.raises(ModelSetupError, match="the saved model cannot be loaded"):
        run_experiment(load_config(None, RUN), copy)
