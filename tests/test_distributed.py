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


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate's launcher is not on PATH")
def test_accelerate_launch_two_processes(tmp_path: Path, data_dir: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model: {name: tiny}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "poison2poison.cli", "run", str(config), "--out", str(tmp_path / "run"), *ARGS]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 320 rows, batch 16: 20 steps in one process, 10 per rank when two ranks share the data.
    assert read_json(tmp_path / "run" / "train.json")["train_steps"] == 10
    assert read_json(tmp_path / "run" / "metrics.json")["clean_count"] == 32
