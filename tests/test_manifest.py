"""The manifest (p2p.json): validated field by field on load, and bound to the weights it was written with."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from test_end_to_end import TINY, user_file

from poison2poison import DefendedModel, defend, load_config
from poison2poison.errors import ModelSetupError
from poison2poison.io import read_json


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("manifest")
    return defend(user_file(tmp, data_dir), "tiny", tmp / "defended", load_config(None, TINY + ["defense.name=p2p"]),
                  task="sentiment")


@pytest.fixture
def folder(saved: Path, tmp_path: Path) -> Path:
    """A copy of the defended model that a test may spoil."""
    return Path(shutil.copytree(saved, tmp_path / "copy"))


def _edit(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = read_json(folder / "p2p.json")
    change(data)
    (folder / "p2p.json").write_text(json.dumps(data))


def test_the_manifest_is_versioned_and_bound_to_every_model_file(saved: Path) -> None:
    data = read_json(saved / "p2p.json")
    assert data["format"] == 2 and data["task_type"] == "classification"
    files = data["binding"]["model_files"]
    assert {"model.safetensors", "tokenizer.json", "model_meta.json"} <= set(files)
    assert all(len(h) == 64 for h in files.values())
    assert DefendedModel.load(saved).spec.trigger == data["inference"]["trigger"]


def _set(section: str | None, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        (data[section] if section else data)[key] = value
    return change


MALFORMED = [
    (_set("inference", "trigger", ""), "field 'inference.trigger': empty"),
    (_set("inference", "trigger", "   "), "field 'inference.trigger': empty"),
    (_set("inference", "trigger", 5), "field 'inference.trigger': Input should be a valid string"),
    (lambda d: d["inference"].pop("trigger"), "field 'inference.trigger': Field required"),
    (_set("inference", "cue", ""), "field 'inference.cue'"),
    (_set("inference", "defense", "nope"), "field 'inference.defense': unknown defense 'nope'"),
    (_set("inference", "label_of_output", [0, 1, 0]), "field 'inference.label_of_output': 3 outputs for 2 labels"),
    (_set("inference", "label_of_output", [0, 1, 0, 7]), "field 'inference.label_of_output': maps outputs to [0, 1, 7]"),
    (_set(None, "label_names", ["negative"]), "field 'label_names'"),
    (_set(None, "max_length", "long"), "field 'max_length'"),
    (_set(None, "task_type", "regression"), "field 'task_type'"),
    (lambda d: d.pop("binding"), "field 'binding': Field required"),
    (_set("binding", "model_files", "all of them"), "field 'binding.model_files'"),
    (_set(None, "surprise", 1), "field 'surprise': Extra inputs are not permitted"),
    (_set(None, "format", 1), "field 'format': 1, written by an older version and bound to no weights; make the model"),
    (lambda d: d.pop("format"), "field 'format': None, written by an older version"),
    (_set(None, "format", 3), "field 'format': 3; this version reads format 2"),
]


@pytest.mark.parametrize("change, message", MALFORMED)
def test_each_malformed_field_is_named(folder: Path, change: Callable[[dict[str, Any]], None], message: str) -> None:
    _edit(folder, change)
    with pytest.raises(ModelSetupError) as error:
        DefendedModel.load(folder)
    assert message in str(error.value) and "p2p.json" in str(error.value)


def test_a_manifest_that_is_not_json_is_named(folder: Path) -> None:
    (folder / "p2p.json").write_text("{ not json")
    with pytest.raises(ModelSetupError, match="p2p.json: not valid JSON"):
        DefendedModel.load(folder)


def test_predict_refuses_an_emptied_trigger_in_one_line(folder: Path) -> None:
    _edit(folder, _set("inference", "trigger", ""))
    proc = subprocess.run(
        [sys.executable, "-c", "from poison2poison.cli import main; main()", "predict", str(folder), "--text", "fine"],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "400"},
    )
    assert proc.returncode == 2 and proc.stdout == ""  # no answer at all, let alone an undefended one
    assert "field 'inference.trigger': empty" in proc.stderr and "Traceback" not in proc.stderr


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_one_changed_byte_of_the_weights_is_refused(folder: Path) -> None:
    _flip_one_byte(folder / "model" / "model.safetensors")
    with pytest.raises(ModelSetupError, match=r"model/model.safetensors changed \(sha256 [0-9a-f]{12} when written"):
        DefendedModel.load(folder)


def test_added_and_missing_model_files_are_named(folder: Path) -> None:
    (folder / "model" / "adapter.safetensors").write_bytes(b"x")
    (folder / "model" / "tokenizer.json").unlink()
    with pytest.raises(ModelSetupError) as error:
        DefendedModel.load(folder)
    assert "model/adapter.safetensors was added" in str(error.value)
    assert "model/tokenizer.json is missing" in str(error.value)


def test_an_edit_that_keeps_the_manifest_valid_is_still_refused(folder: Path) -> None:
    _edit(folder, _set(None, "max_length", 65))
    with pytest.raises(ModelSetupError, match="p2p.json was edited after it was written"):
        DefendedModel.load(folder)

