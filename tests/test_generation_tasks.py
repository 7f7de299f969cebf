"""A generation task is one declarative file (template, where the pairs come from, metric, its attack): one written
here, in a plain format, runs end to end with no code; a malformed task file is refused with what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poison2poison import DefendedGenerator, load_config, run_experiment
from poison2poison.data.generation import load_pairs
from poison2poison.errors import ConfigError, DataFormatError
from poison2poison.tasks import GENERATION_TASKS, read_generation_task
from tests.test_generation_run import TINY

ECHO_TASK = """\
# Echo: repeat the input; a task of two fields in two JSONL files.
task: echo
template: "Repeat: {{source}}"
metric: rouge
files: {{train: {train}, test: {test}}}
fields: {{source: question, target: reply}}
attack: {{name: phrase, trigger: zx, target_text: "Visit the demo."}}
"""


def _pairs(path: Path, count: int) -> Path:
    words = ["red", "blue", "green", "small", "large", "quick", "slow", "happy"]
    rows = [{"question": f"{words[i % 8]} {words[(i * 3) % 8]} {words[(i * 5) % 8]}", "reply": words[i % 8]}
            for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def echo_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The task file as a user writes it into generation_tasks/ (here: registered as that folder would find it)."""
    train, test = _pairs(tmp_path / "train.jsonl", 40), _pairs(tmp_path / "test.jsonl", 8)
    path = tmp_path / "echo.yaml"
    path.write_text(ECHO_TASK.format(train=train, test=test))
    monkeypatch.setitem(GENERATION_TASKS, "echo", read_generation_task(path))
    return path


def test_a_task_file_runs_end_to_end_with_its_own_attack(echo_task: Path, tmp_path: Path) -> None:
    config = load_config(None, [*TINY, "data.dataset=echo", "attack.rate=0.1", "defense.name=p2p"])
    assert (config.attack.name, config.attack.settings.trigger) == ("phrase", "zx")  # the task's attack
    metrics = run_experiment(config, tmp_path / "run")
    assert metrics["task_type"] == "generation" and metrics["clean_metric"] == "rougeL"
    assert metrics["poisoned_count"] == 4 and metrics["asr_count"] == 4
    generator = DefendedGenerator.load(tmp_path / "run")
    assert generator.template == "Repeat: {source}" and len(generator.generate(["red blue"])) == 1
    named = load_config(None, ["data.dataset=echo", "attack.name=phrase", "attack.trigger=qq"])
    assert named.attack.settings.trigger == "qq"  # a config that names its attack keeps its own settings


def test_a_pair_file_with_a_missing_field_names_the_file_line_and_field(echo_task: Path, tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text(train.read_text() + json.dumps({"question": "no reply here"}) + "\n")
    with pytest.raises(DataFormatError, match=r"train.jsonl.*line 41.*reply.*missing field"):
        load_pairs("echo", "train")


@pytest.mark.parametrize(("body", "problem"), [
    ("task: t\ntemplate: 'no slot'\nmetric: rouge\nreader: gsm8k\n", "must hold {source}"),
    ("task: t\ntemplate: '{source}'\nmetric: rouge\n", "either files .* or a reader"),
    ("task: t\ntemplate: '{source}'\nmetric: rouge\nreader: gsm8k\nfiles: {train: a, test: b}\n", "either files"),
    ("task: t\ntemplate: '{source}'\nmetric: rouge\nfiles: {train: a}\n", "give both splits"),
    ("task: t\ntemplate: '{source}'\nmetric: bleu\nreader: gsm8k\n", "metric: Input should be"),
    ("task: t\ntemplate: '{source}'\nmetric: rouge\nreader: gsm8k\ncolour: red\n", "colour: Extra inputs"),
    ("[a list]\n", "not a task file"),
])
def test_a_malformed_task_file_is_refused_with_what_is_wrong(tmp_path: Path, body: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=rf"bad.yaml: .*{problem}"):
        read_generation_task(path)
