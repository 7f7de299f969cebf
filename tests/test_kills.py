"""kill -9 at chosen instants of a run (tests/kill_run.py), then the same command again: the run ends with the
metrics, predictions, manifest and weights of an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from poison2poison import load_config, run_experiment
from poison2poison.io import read_json
from poison2poison.training import COMPLETE_FILE

KILL_SCRIPT = Path(__file__).with_name("kill_run.py")
RUN = [
    "defense.name=p2p", "data.train_size=160", "data.test_size=40", "train.epochs=1", "train.batch_size=16",
    "train.learning_rate=0.001", "train.save_steps=5", "model.tiny_hidden_size=64", "model.tiny_layers=2",
    "model.tiny_vocab_size=600", "model.max_length=64", "attack.rate=0.05",
]
"""10 optimiser steps, checkpoints after steps 5 and 10."""
TIMINGS = {"train_seconds", "resumed_from_step", "resumed_seconds", "eval_seconds", "wall_seconds",
           "inference_seconds", "screen_seconds", "defense_seconds"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, dict[str, Any]]:
    run_dir = tmp_path_factory.mktemp("whole")
    return run_dir, run_experiment(load_config(None, RUN), run_dir)


def kill_at(instant: str, run_dir: Path) -> None:
    proc = subprocess.run([sys.executable, str(KILL_SCRIPT), instant, str(run_dir), *RUN],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def without_timings(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k not in TIMINGS}


def manifest_without_timings(run_dir: Path) -> dict[str, Any]:
    manifest = read_json(run_dir / "p2p.json")
    manifest["defense_details"].pop("defense_seconds")
    manifest["binding"].pop("manifest_sha256")  # a hash of the fields, the timing among them; the weights' stay
    return manifest


def complete(checkpoint: Path) -> bool:
    return (checkpoint / COMPLETE_FILE).is_file()


def left_behind(instant: str, run_dir: Path) -> None:
    """What the kill left: each instant is the one it names."""
    checkpoints = run_dir / "checkpoints"
    if instant == "data-prep":
        assert not run_dir.exists()  # nothing is written before the data is checked
    elif instant == "step-7":
        assert complete(checkpoints / "checkpoint-5") and not (checkpoints / "checkpoint-10").exists()
    elif instant == "checkpoint-write-10":
        assert complete(checkpoints / "checkpoint-5")
        assert (checkpoints / "checkpoint-10" / "model.safetensors").is_file()
        assert not complete(checkpoints / "checkpoint-10")  # looks like a checkpoint, is not one
    elif instant == "checkpoint-write-5":
        assert not complete(checkpoints / "checkpoint-5")  # no complete checkpoint: the fine-tune starts over
    elif instant == "model-save":
        assert (run_dir / "model.tmp").is_dir() and not (run_dir / "model").exists()
    elif instant == "evaluation":
        assert (run_dir / "model" / "model.safetensors").is_file() and not (run_dir / "metrics.json").exists()


@pytest.mark.parametrize(
    "instant", ["data-prep", "step-7", "checkpoint-write-10", "checkpoint-write-5", "model-save", "evaluation"]
)
def test_a_run_killed_at_any_instant_ends_as_an_uninterrupted_run(
    instant: str, uninterrupted: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    whole_dir, whole = uninterrupted
    run_dir = tmp_path / "run"
    kill_at(instant, run_dir)
    left_behind(instant, run_dir)
    metrics = run_experiment(load_config(None, RUN), run_dir)  # the same command again
    assert without_timings(metrics) == without_timings(whole)
    expected, got = load_file(whole_dir / "model" / "model.safetensors"), load_file(run_dir / "model" / "model.safetensors")
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert (run_dir / "predictions.jsonl").read_text() == (whole_dir / "predictions.jsonl").read_text()
    assert manifest_without_timings(run_dir) == manifest_without_timings(whole_dir)
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "model.tmp").exists()
    if instant == "checkpoint-write-10":
        log_text = (run_dir / "log.txt").read_text()
        assert "checkpoint-10 is incomplete" in log_text and "resuming fine-tuning from" in log_text
        assert metrics["resumed_from_step"] == 5 and metrics["resumed_seconds"] > 0
    record = read_json(run_dir / "run.json")
    assert record["data_hashes"] == {k: v for k, v in whole["data_hashes"].items() if k != "defended_train"}
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
