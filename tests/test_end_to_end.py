"""End-to-end runs on real SST-2 rows with tiny models: the run directory contract, resume, reproducibility,
and the user commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from poison2poison import DefendedModel, defend, load_config, run_experiment
from poison2poison.cli import app
from poison2poison.defenses.p2p import RobustP2PSettings
from poison2poison.io import read_json
from poison2poison.summary import collect_metrics, markdown_table

TINY = [
    "data.train_size=160", "data.test_size=40", "train.epochs=1", "train.batch_size=16", "train.learning_rate=0.001",
    "train.save_steps=5", "model.tiny_hidden_size=64", "model.tiny_layers=2", "model.tiny_vocab_size=600",
    "model.max_length=64", "attack.rate=0.05",
]
METRIC_KEYS = {"clean_accuracy", "clean_count", "attack_success_rate", "asr_count", "defense", "attack", "model", "data_hashes"}


@pytest.fixture(scope="module")
def p2p_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("run")
    metrics = run_experiment(load_config(None, TINY + ["defense.name=p2p"]), run_dir)
    return run_dir, metrics


def test_run_writes_the_run_directory(p2p_run: tuple[Path, dict]) -> None:
    run_dir, metrics = p2p_run
    assert METRIC_KEYS <= set(metrics)
    assert metrics["clean_count"] == 40 and metrics["asr_count"] == 40 and metrics["poisoned_count"] == 8
    assert metrics["inference_inputs"] == 80 and 0 < metrics["inference_seconds"] <= metrics["eval_seconds"]
    assert 0.0 <= metrics["clean_accuracy"] <= 1.0 and 0.0 <= metrics["attack_success_rate"] <= 1.0
    for name in ("config.yaml", "metrics.json", "predictions.jsonl", "p2p.json", "log.txt", "model/model.safetensors"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "checkpoints").exists()
    manifest = read_json(run_dir / "p2p.json")
    assert manifest["inference"]["label_of_output"] == [0, 1, 0, 1]
    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 80
    assert all(p["prediction"] == p["raw_output"] % 2 for p in predictions)
    log_text = (run_dir / "log.txt").read_text()
    assert manifest["inference"]["trigger"] not in log_text
    assert "the published trigger" in log_text  # logs say which kind of trigger, never which one


def test_finished_run_is_skipped_and_saved_model_is_reused(p2p_run: tuple[Path, dict]) -> None:
    run_dir, metrics = p2p_run
    config = load_config(None, TINY + ["defense.name=p2p"])
    assert run_experiment(config, run_dir) == metrics  # skipped: same metrics, nothing recomputed
    (run_dir / "metrics.json").unlink()
    weights = (run_dir / "model" / "model.safetensors").stat().st_mtime_ns
    again = run_experiment(config, run_dir)  # resumes from the saved model: evaluation only
    assert (run_dir / "model" / "model.safetensors").stat().st_mtime_ns == weights
    assert again["clean_accuracy"] == metrics["clean_accuracy"]
    assert again["attack_success_rate"] == metrics["attack_success_rate"]


def test_same_seed_same_data_and_metrics(p2p_run: tuple[Path, dict], tmp_path: Path) -> None:
    _, metrics = p2p_run
    again = run_experiment(load_config(None, TINY + ["defense.name=p2p"]), tmp_path)
    assert again["data_hashes"] == metrics["data_hashes"]
    assert again["clean_accuracy"] == metrics["clean_accuracy"]
    assert again["train_loss"] == pytest.approx(metrics["train_loss"], rel=1e-5)
    other = run_experiment(load_config(None, TINY + ["defense.name=p2p", "seed=1"]), tmp_path / "s1")
    assert other["data_hashes"]["poisoned_train"] != metrics["data_hashes"]["poisoned_train"]


def test_run_dir_with_another_config_is_refused(p2p_run: tuple[Path, dict]) -> None:
    from poison2poison.errors import RunDirError

    with pytest.raises(RunDirError, match="finished run that is not this one: its config differs. Add --force"):
        run_experiment(load_config(None, TINY + ["defense.name=none"]), p2p_run[0])


def test_a_run_saved_before_a_new_setting_existed_is_still_finished(p2p_run: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir, metrics = p2p_run
    old = tmp_path / "old"
    old.mkdir()
    lines = (run_dir / "config.yaml").read_text().splitlines(keepends=True)
    (old / "config.yaml").write_text("".join(line for line in lines if "output_prefix" not in line))
    (old / "metrics.json").write_text(json.dumps(metrics))
    assert run_experiment(load_config(None, TINY + ["defense.name=p2p"]), old) == metrics  # no work redone


def test_a_resumed_run_keeps_its_secret_trigger(tmp_path: Path) -> None:
    config = load_config(None, TINY + ["defense.name=p2p", "defense.trigger=secret"])
    first = run_experiment(config, tmp_path)
    trigger = read_json(tmp_path / "p2p.json")["inference"]["trigger"]
    (tmp_path / "metrics.json").unlink()  # interrupted after training: the saved model is reused
    (tmp_path / "p2p.json").unlink()
    again = run_experiment(config, tmp_path)
    assert read_json(tmp_path / "p2p.json")["inference"]["trigger"] == trigger
    assert again["clean_accuracy"] == first["clean_accuracy"] and again["config_hash"] == first["config_hash"]
    other = tmp_path / "other"
    run_experiment(config, other)
    assert read_json(other / "p2p.json")["inference"]["trigger"] != trigger  # each run draws its own


def _crash_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    from poison2poison import training

    original = training.RichProgress.on_step_end

    def crash(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        original(self, args, state, control, **kwargs)
        if state.global_step == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.RichProgress, "on_step_end", crash)


def test_interrupted_training_resumes_from_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(None, TINY + ["defense.name=none"])
    with monkeypatch.context() as patch:
        _crash_at_step(patch, 7)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, tmp_path)
    assert (tmp_path / "checkpoints" / "checkpoint-5").is_dir() and not (tmp_path / "metrics.json").exists()
    metrics = run_experiment(config, tmp_path)
    assert "resuming fine-tuning from" in (tmp_path / "log.txt").read_text()
    assert metrics["train_steps"] == 10  # 160 rows / batch 16, one epoch: the resumed run finished the schedule
    assert metrics["resumed_from_step"] == 5
    # its seconds cover every step: those its checkpoint recorded, and the steps after it
    assert 0 < metrics["resumed_seconds"] < metrics["train_seconds"]
    assert "timed in part" not in markdown_table(collect_metrics([tmp_path]))


def _weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / "model" / "model.safetensors")


GROUPED = TINY + ["defense.name=none", "data.train_size=96", "train.epochs=2", "train.group_by_length=true"]


@pytest.fixture(scope="module")
def grouped_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("whole")
    return run_dir, run_experiment(load_config(None, GROUPED), run_dir)


@pytest.mark.parametrize("old_checkpoint", [False, True])
def test_a_length_grouped_run_resumed_mid_epoch_ends_with_the_uninterrupted_weights(
    grouped_run: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old_checkpoint: bool
) -> None:
    from poison2poison.training import ORDER_STATE_FILE

    config = load_config(None, GROUPED)
    with monkeypatch.context() as patch:
        _crash_at_step(patch, 11)  # 6 steps an epoch: checkpoint-10 lies in the second epoch
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, tmp_path / "cut")
    checkpoint = tmp_path / "cut" / "checkpoints" / "checkpoint-10"
    assert (checkpoint / ORDER_STATE_FILE).is_file()
    if old_checkpoint:  # written before the order was saved: it cannot resume on the same batches
        (checkpoint / ORDER_STATE_FILE).unlink()
    resumed = run_experiment(config, tmp_path / "cut")
    assert resumed["resumed_from_step"] == (0 if old_checkpoint else 10)
    assert ("starts over" in (tmp_path / "cut" / "log.txt").read_text()) == old_checkpoint
    expected, got = _weights(grouped_run[0]), _weights(tmp_path / "cut")
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    assert resumed["clean_accuracy"] == grouped_run[1]["clean_accuracy"]


def user_file(tmp_path: Path, data_dir: Path) -> Path:
    """A user's own labelled file: 48 real SST-2 dev rows as {text, label} JSON lines."""
    rows = [json.loads(line) for line in (data_dir / "sst2" / "dev.jsonl").read_text().splitlines()[:48]]
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps({"text": r["sentence"], "label": r["label"]}) + "\n" for r in rows))
    return data


def test_defend_and_predict_from_python_and_cli(tmp_path: Path, data_dir: Path) -> None:
    data = user_file(tmp_path, data_dir)
    config = load_config(None, TINY + ["defense.name=p2p+", "defense.screen=[lexical]"])
    out = defend(data, "tiny", tmp_path / "defended", config, task="sentiment")
    assert (out / "screening.json").is_file()  # robust P2P screened the user's rows and dropped its share
    dropped = read_json(out / "p2p.json")["defense_details"]["dropped_count"]
    assert dropped == round(50 * RobustP2PSettings.section_defaults["drop_suspicious"])
    mine = [json.loads(line) for line in data.read_text().splitlines()]
    left_out = [json.loads(line) for line in (out / "left_out.jsonl").read_text().splitlines()]
    assert len(left_out) == dropped  # every row left out is listed, with where it is in the user's file and why
    for record in left_out:
        assert {"text": record["text"], "label": record["label"]} == mine[record["row"] - 1]
        assert record["reason"].startswith(("among the most suspicious 10% of rows", "carries the confirmed trigger"))
    model = DefendedModel.load(out)
    assert model.spec.trigger and model.spec.num_outputs == 4
    labels = model.predict(["a gripping film", "a dull mess"])
    assert set(labels) <= {"negative", "positive"} and len(labels) == 2

    texts = tmp_path / "texts.txt"
    texts.write_text("a gripping film\na dull mess\n")
    result = CliRunner().invoke(app, ["predict", str(out), "--input", str(texts), "--text", "fine"])
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [a["text"] for a in answers] == ["fine", "a gripping film", "a dull mess"]
    assert [a["label_name"] for a in answers[1:]] == labels


def test_defend_again_keeps_the_secret_trigger_of_its_saved_model(tmp_path: Path, data_dir: Path) -> None:
    data = user_file(tmp_path, data_dir)
    config = load_config(None, TINY + ["defense.name=p2p", "defense.trigger=secret"])
    out = defend(data, "tiny", tmp_path / "defended", config, task="sentiment")
    trigger = read_json(out / "p2p.json")["inference"]["trigger"]
    defend(data, "tiny", out, config, task="sentiment")  # the saved model is reused; so must its trigger be
    assert read_json(out / "p2p.json")["inference"]["trigger"] == trigger


def test_cli_run_and_table(tmp_path: Path, data_dir: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("defense: {name: none}\n")
    args = ["run", str(config), "--out", str(tmp_path / "runs" / "x" / "seed0")]
    for item in TINY:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    table = CliRunner().invoke(app, ["table", str(tmp_path / "runs")])
    assert "| x | none | 0 |" in table.stdout


def test_cli_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence": "ok", "label": 1}\n{"sentence": "", "label": 0}\n')
    proc = subprocess.run(
        [sys.executable, "-c", "from poison2poison.cli import main; main()", "defend", "--data", str(bad),
         "--model", "tiny", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "400"},  # one line, whatever the path's length
    )
    assert proc.returncode == 2
    assert "bad.jsonl, line 2, field 'sentence': text is empty" in proc.stderr
    assert "Traceback" not in proc.stderr
