"""`accelerate launch --multi_gpu --num_processes 2` on CPU: two ranks in one gloo DDP group, half the steps each."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from poison2poison.io import read_json

ARGS = ["--set", "data.train_size=320", "--set", "data.test_size=32", "--set", "train.epochs=1", "--set",
        "model.tiny_layers=1", "--set", "model.tiny_hidden_size=64", "--set", "defense.name=p2p"]


needs_launcher = pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate's launcher is not on PATH")


def launch_two(tmp_path: Path, out: str, args: list[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model: {name: tiny}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "poison2poison.cli", "run", str(config), "--out", str(tmp_path / out), *args]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@needs_launcher
def test_accelerate_launch_two_processes(tmp_path: Path, data_dir: Path) -> None:
    launch_two(tmp_path, "run", ARGS)
    # 320 rows, batch 16: 20 steps in one process, 10 per rank when two ranks share the data.
    assert read_json(tmp_path / "run" / "train.json")["train_steps"] == 10
    assert read_json(tmp_path / "run" / "metrics.json")["clean_count"] == 32


@needs_launcher
def test_a_defense_loss_is_scaled_like_the_default_across_processes(tmp_path: Path, data_dir: Path) -> None:
    """DeCE with alpha 1 and no smoothing is cross-entropy: on two ranks it must train as the default loss does
    (a per-rank mean would be scaled by the number of processes)."""
    plain = [a if a != "defense.name=p2p" else "defense.name=none" for a in ARGS]
    launch_two(tmp_path, "plain", plain)
    launch_two(tmp_path, "hooked", plain + ["--set", "defense.name=dece", "--set", "defense.dece_alpha_base=1",
                                             "--set", "defense.dece_smoothing=0"])
    hooked, default = (read_json(tmp_path / run / "train.json")["train_loss"] for run in ("hooked", "plain"))
    assert hooked == pytest.approx(default, rel=1e-4)
