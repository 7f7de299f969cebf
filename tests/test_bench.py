"""Benchmark grid: expansion, shard arithmetic, resume and failure records; the report from a small results table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from poison2poison.bench import (
    CLEAN,
    Cell,
    inference_ms_per_1k,
    load_grid,
    parse_shard,
    result_row,
    run_grid,
    shard_cells,
)
from poison2poison.cli import app
from poison2poison.config import ExperimentConfig
from poison2poison.errors import ConfigError
from poison2poison.io import atomic_write_json, read_json
from poison2poison.report import asr_above_floor, build_report, cost_ratios

GRID = """
base: {data: {dataset: sst2, train_size: 100}, model: {name: tiny}}
seeds: [0, 1]
attacks:
  badnets: {attack.name: badnets, attack.rate: 0.02}
  addsent: {attack.name: addsent, attack.rate: 0.03}
defenses:
  none: {defense.name: none}
  p2p: {defense.name: p2p, defense.rho: 0.1}
  onion-like: {defense.name: p2p+, seeds: [0]}
"""


@pytest.fixture()
def grid(tmp_path: Path) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(GRID)
    return path


def fake_metrics(config: ExperimentConfig) -> dict[str, Any]:
    return {
        "clean_accuracy": 0.8, "clean_count": 10, "attack_success_rate": 0.5 if config.defense.name != "none" else 1.0,
        "asr_count": 5, "config_hash": config.config_hash(), "train_seconds": 2.0, "eval_seconds": 0.15,
        "defense_seconds": 0.5,
        "defense_variant": config.defense.variant, "seed": config.seed, "defense": config.defense.name,
    }


class FakeRun:
    """Stands in for run_experiment: writes metrics.json, and fails on the cells it is told to."""

    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.calls: list[Path] = []
        self.fail = fail

    def __call__(self, config: ExperimentConfig, run_dir: Path) -> dict[str, Any]:
        self.calls.append(run_dir)
        if any(run_dir.as_posix().endswith(key) for key in self.fail):
            raise RuntimeError("out of memory")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config.to_yaml())
        atomic_write_json(run_dir / "metrics.json", fake_metrics(config))
        return fake_metrics(config)


def test_grid_expands_axes_seeds_and_clean_floor(grid: Path) -> None:
    cells = load_grid(grid)
    keys = [c.key for c in cells]
    # per attack: clean floor x 2 seeds, none x 2, p2p x 2, p2p+ x 1 (its own seeds)
    assert len(cells) == 2 * (2 + 2 + 2 + 1) == len(set(keys))
    floor = next(c for c in cells if c.labels["defense"] == CLEAN)
    assert floor.config.attack.rate == 0 and floor.config.defense.name == "none"
    p2p = next(c for c in cells if c.labels["defense"] == "p2p" and c.labels["attack"] == "addsent" and c.seed == 1)
    assert (p2p.config.defense.rho, p2p.config.attack.name, p2p.config.attack.rate) == (0.1, "addsent", 0.03)
    assert p2p.config.data.train_size == 100 and p2p.key == "base/addsent/p2p/base/seed1"
    assert [c.seed for c in cells if c.labels["defense"] == "onion-like"] == [0, 0]


@pytest.mark.parametrize(
    ("grid_text", "error"),
    [
        ("defenses:\n  p2p: {defense.name: p2p, defense.rho: 2}\n", r"bad.yaml: cell base/base/p2p/base/seed0: defense.rho"),
        ("defenses:\n  clean: {defense.name: none}\n", "reserved"),
        ("base: nowhere.yaml\n", "no such config file"),
        ("defenses:\n  p2p: 5\n", "bad.yaml: defenses: .*must map settings"),
        ("defenses:\n  ../escape: {defense.name: p2p}\n", "not a usable name"),
        ("base: list.yaml\n", "list.yaml: the top level must be a mapping"),
    ],
)
def test_grid_errors_name_the_file_and_the_cell(tmp_path: Path, grid_text: str, error: str) -> None:
    (tmp_path / "list.yaml").write_text("- 1\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(grid_text)
    with pytest.raises(ConfigError, match=error):
        load_grid(bad)


def test_a_grid_changed_under_finished_cells_is_refused_not_misreported(grid: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_grid(load_grid(grid), out, run=FakeRun(), progress=False)
    grid.write_text(GRID.replace("defense.rho: 0.1", "defense.rho: 0.3"))
    changed = load_grid(grid)
    with pytest.raises(ConfigError, match="another config.*p2p"):
        run_grid(changed, out, run=FakeRun(), progress=False)
    p2p = next(c for c in changed if c.labels["defense"] == "p2p")
    assert result_row(p2p, out)["status"] == "stale"
    collected = run_grid(changed, out, run=FakeRun(), progress=False, collect_only=True)  # a report, not a run
    assert collected["ran"] == 0 and [r["status"] for r in read_json(out / "results.json")].count("stale") == 4


def test_a_cell_run_before_a_new_setting_existed_is_still_finished(grid: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cells = load_grid(grid)
    run_grid(cells, out, run=FakeRun(), progress=False)
    cell_dir = out / "cells" / cells[0].key
    saved = yaml.safe_load((cell_dir / "config.yaml").read_text())
    del saved["defense"]["benign_head"]  # as written by a version that had no such setting (default: as before)
    (cell_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    again = FakeRun()
    run_grid(cells, out, run=again, progress=False)
    assert again.calls == [] and result_row(cells[0], out)["status"] == "ok"


@given(st.integers(1, 40), st.integers(1, 9))
def test_shards_partition_the_grid(n_cells: int, n_shards: int) -> None:
    cells = [Cell({"dataset": "d", "attack": "a", "defense": "f", "model": "m"}, i, ExperimentConfig()) for i in range(n_cells)]
    shards = [shard_cells(cells, i, n_shards) for i in range(1, n_shards + 1)]
    seeds = sorted(c.seed for shard in shards for c in shard)
    assert seeds == list(range(n_cells))  # every cell once, no cell twice
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced


@pytest.mark.parametrize("text", ["0/3", "4/3", "2", "a/b", "1/0"])
def test_bad_shard_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(text)


def test_grid_resumes_and_records_failures_without_stopping(grid: Path, tmp_path: Path) -> None:
    cells, out = load_grid(grid), tmp_path / "out"
    broken = "badnets/p2p/base/seed1"
    first = FakeRun(fail={broken})
    counts = run_grid(cells, out, run=first, progress=False)
    assert counts == {"selected": 14, "done": 0, "ran": 13, "failed": 1, "finished": 13}
    rows = {r["cell"]: r for r in read_json(out / "results.json")}
    failed = rows[f"base/{broken}"]
    assert failed["status"] == "failed" and "out of memory" in failed["error"] and failed["config_hash"]
    assert (out / "results.csv").read_text().count("\n") == 15  # header + every cell

    again = FakeRun()
    counts = run_grid(cells, out, run=again, progress=False)
    assert [p.as_posix().split("cells/")[1] for p in again.calls] == [f"base/{broken}"]  # only the missing cell
    assert counts["finished"] == 14 and not (out / "cells" / "base" / broken / "error.json").exists()
    done = FakeRun()
    assert run_grid(cells, out, run=done, progress=False)["ran"] == 0 and done.calls == []  # a finished grid: no work


def test_shards_on_one_folder_complete_the_grid(grid: Path, tmp_path: Path) -> None:
    cells, out = load_grid(grid), tmp_path / "out"
    runs = [FakeRun() for _ in range(3)]
    for i, run in enumerate(runs, start=1):
        counts = run_grid(cells, out, shard=(i, 3), run=run, progress=False)
    assert sorted(len(r.calls) for r in runs) == [4, 5, 5] and counts["finished"] == len(cells)


def test_collecting_a_half_run_grid_runs_nothing_and_tables_every_cell(grid: Path, tmp_path: Path) -> None:
    cells, out = load_grid(grid), tmp_path / "out"
    run_grid(cells, out, shard=(1, 2), run=FakeRun(), progress=False)
    idle = FakeRun()
    counts = run_grid(cells, out, run=idle, progress=False, collect_only=True)
    assert idle.calls == [] and counts["ran"] == 0 and counts["finished"] == 7
    statuses = [r["status"] for r in read_json(out / "results.json")]
    assert statuses.count("ok") == 7 and statuses.count("missing") == 7
    with pytest.raises(ConfigError, match="no grid cells"):
        run_grid(cells, tmp_path / "typo", run=idle, progress=False, collect_only=True)


def test_result_row_carries_labels_metrics_and_latency(grid: Path, tmp_path: Path) -> None:
    cell = load_grid(grid)[3]
    FakeRun()(cell.config, tmp_path / "cells" / cell.key)
    row = result_row(cell, tmp_path)
    assert row["status"] == "ok" and row["defense"] == cell.labels["defense"]  # the label, not the metrics' name
    assert row["inference_ms_per_1k"] == pytest.approx(1e6 * 0.15 / 15)
    assert row["clean_metric"] == "CA" and row["clean_score"] == 0.8
    assert row["defense_seconds"] == 0.5  # a reference fine-tune counts in the fine-tune cost


def test_latency_comes_from_the_timed_answers_when_a_run_has_them() -> None:
    timed = {"inference_seconds": 0.3, "inference_inputs": 20, "eval_seconds": 9.0, "clean_count": 10, "asr_count": 5}
    assert inference_ms_per_1k(timed) == pytest.approx(15_000)
    older = {"eval_seconds": 0.15, "clean_count": 10, "asr_count": 5}
    assert inference_ms_per_1k(older) == pytest.approx(10_000)


def results_table() -> list[dict[str, Any]]:
    rows = []
    for seed in (0, 1):
        for defense, asr, ca, train, ms in [("clean", 0.1, 0.9, 10, 5), ("none", 1.0, 0.88, 10 + 10 * seed, 5 + 5 * seed),
                                            ("p2p", 0.2 + seed / 10, 0.87, 10.5 * (1 + seed), 5.1 * (1 + seed)),
                                            ("onion", 0.6, 0.8, 10 * (1 + seed), 300 * (1 + seed))]:
            for rho in ([0.1, 0.2] if defense == "p2p" else [None]):
                rows.append({
                    "cell": f"sst2/badnets/{defense}{rho or ''}/minilm/seed{seed}", "dataset": "sst2",
                    "attack": "badnets", "defense": f"{defense}{rho or ''}", "model": "minilm", "seed": seed,
                    "status": "ok", "clean_metric": "CA", "clean_score": ca, "attack_success_rate": asr, "rho": rho,
                    "defense_variant": "p2p(random)" if rho else defense, "train_seconds": train,
                    "screen_seconds": 0.0, "inference_ms_per_1k": ms,
                })
    rows.append({**rows[0], "cell": "x", "seed": 2, "status": "failed", "error": "boom"})
    rows.append({**rows[0], "cell": "y", "defense": "cube", "defense_variant": "cube", "status": "failed", "error": "boom"})
    rows.append({**rows[2], "cell": "z", "defense": "strip", "defense_variant": "strip", "detection_precision": 0.5,
                 "detection_recall": 0.25, "triggered_rejected": 10, "clean_accuracy_accepted": 0.91,
                 "attack_success_rate_accepted": 0.95})
    return rows


def test_asr_above_the_floor_is_paired_by_seed() -> None:
    floor = [{"seed": 0, "attack_success_rate": 0.1}, {"seed": 1, "attack_success_rate": 0.3}]
    assert asr_above_floor([{"seed": 0, "attack_success_rate": 0.2}], floor) == pytest.approx(0.1)  # not 0.2 - 0.2
    assert asr_above_floor([{"seed": 7, "attack_success_rate": 0.2}], floor) == pytest.approx(0.0)  # no pair: the mean
    assert asr_above_floor([], floor) is None and asr_above_floor([{"seed": 0, "attack_success_rate": 1}], []) is None


def test_cost_ratios_pair_each_run_with_no_defense_on_the_same_seed() -> None:
    costs = cost_ratios(results_table())
    assert costs["p2p0.1"]["fine_tune"].mean == pytest.approx(1.05)
    assert costs["onion"]["inference"].mean == pytest.approx(60.0)
    assert "clean" not in costs
    per_setting = cost_ratios(results_table(), per_setting=True)
    assert per_setting[("sst2", "badnets", "minilm", "onion")]["inference"].mean == pytest.approx(60.0)


@pytest.mark.parametrize("resumed", ["onion", "none"])
def test_a_resumed_fine_tune_gives_no_fine_tune_ratio(resumed: str) -> None:
    rows = results_table()
    for row in rows:
        if row["defense"] == resumed and row["seed"] == 1:
            row["resumed_from_step"], row["train_seconds"] = 300, 0.5  # timed only after its checkpoint
    costs = cost_ratios(rows)
    assert costs["onion"]["fine_tune"].n == 1 and costs["onion"]["fine_tune"].mean == pytest.approx(1.0)
    assert costs["onion"]["inference"].mean == pytest.approx(60.0)  # the evaluation was whole


def test_report_builds_markdown_html_and_figures(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(results_table()))
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--title", "demo"])
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "report.md").read_text()
    assert "# demo" in markdown and "11 cells finished, 2 failed" in markdown
    assert "| badnets | clean | 0, 1 | 0.900 ± 0.000 | 0.100 ± 0.000 | – | – | – | 1 |" in markdown
    assert "| badnets | p2p0.1 | 0, 1 | 0.870 ± 0.000 | 0.250 ± 0.071 | +0.150 | 1.05 ± 0.00 | 1.02 ± 0.00 |  |" in markdown
    assert "| badnets | cube |  | – | – | – | – | – | 1 |" in markdown  # every seed failed: still a row
    assert "| badnets | strip | triggered inputs | 0.500 | 0.250 | 0.910 | 0.950 |" in markdown
    for name in ("ca_vs_asr", "asr_by_attack", "rho_sweep", "cost"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "<img src='figures" not in page  # self-contained


def test_report_without_results_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="p2p bench"):
        build_report(tmp_path)


def test_cli_bench_runs_real_cells_then_reports(tmp_path: Path, data_dir: Path) -> None:
    from tests.test_end_to_end import TINY

    settings = "\n".join(f"    {key}: {value}" for key, value in (item.split("=", 1) for item in TINY))
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"datasets:\n  sst2:\n{settings}\ndefenses:\n  none: {{defense.name: none}}\n")
    out = tmp_path / "grid"
    result = CliRunner().invoke(app, ["bench", str(grid), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Whole grid: 2/2 finished" in " ".join(result.output.split())  # the console wraps lines
    rows = read_json(out / "results.json")
    assert {r["defense"] for r in rows} == {"clean", "none"} and all(r["status"] == "ok" for r in rows)
    again = CliRunner().invoke(app, ["bench", str(grid), "--out", str(out), "--shard", "1/2"])
    assert "1 already finished, 0 ran" in " ".join(again.output.split())
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    assert "| base | none | 0 |" in (out / "report.md").read_text()


@pytest.mark.parametrize("count", [3, 10, 12, 20])
def test_every_defense_in_a_figure_gets_a_colour_of_its_own(count: int) -> None:
    from poison2poison.report import _defense_colors

    colours = _defense_colors([f"defense{i}" for i in range(count)])
    assert len(set(colours.values())) == count  # the SST-2 grid has 10 defenses, the tiny grid 12
