"""Benchmark grids: datasets x attacks x defenses x models x seeds, each cell an ordinary run.

A grid is resumable (a finished cell is skipped, an interrupted one resumes from its run directory), survives a
failing cell (its error is recorded and the grid goes on), and splits into shards that any scheduler can run side by
side on the same output folder. Every pass ends by rewriting one tidy table of all cells, so a report can be built
from a partial grid.
"""

from __future__ import annotations

import copy
import csv
import logging
import re
import time
import traceback
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from tqdm.auto import tqdm

from .config import ExperimentConfig, read_yaml_mapping, set_dotted
from .errors import ConfigError, validation_problems
from .io import atomic_write_json, atomic_write_text, read_json
from .rundir import METRICS, saved_config_hash
from .summary import clean_metric

log = logging.getLogger(__name__)

AXES = ("dataset", "attack", "defense", "model")
CLEAN = "clean"  # the defense label of a clean-floor cell: no poison, no defense
CELLS, RESULTS_JSON, RESULTS_CSV, ERROR = "cells", "results.json", "results.csv", "error.json"
SAFE_NAME = re.compile(r"[A-Za-z0-9._+-]+")


class AxisEntry(BaseModel):
    """One value of an axis: dotted config settings, and (for defenses) the seeds it runs with."""

    model_config = ConfigDict(extra="forbid")
    settings: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] | None = None


class GridConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: dict[str, Any] | str = Field(default_factory=dict, description="a config mapping, or a YAML path")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    clean_floor: bool = Field(True, description="add a no-poison, no-defense cell per dataset x attack x model x seed")
    datasets: dict[str, AxisEntry] = Field(default_factory=lambda: {"base": AxisEntry()})
    attacks: dict[str, AxisEntry] = Field(default_factory=lambda: {"base": AxisEntry()})
    defenses: dict[str, AxisEntry] = Field(default_factory=lambda: {"base": AxisEntry()})
    models: dict[str, AxisEntry] = Field(default_factory=lambda: {"base": AxisEntry()})

    @field_validator("datasets", "attacks", "defenses", "models", mode="before")
    @classmethod
    def _entries(cls, value: Any) -> Any:
        """`name: {key: value, seeds: [..]}` reads as settings plus seeds."""
        if not isinstance(value, dict):
            return value
        out = {}
        for name, entry in value.items():
            if not SAFE_NAME.fullmatch(str(name)) or str(name) in (".", ".."):
                raise ValueError(f"'{name}' is not a usable name (letters, digits and . _ + - only): it names a folder")
            if entry is not None and not isinstance(entry, dict):
                raise ValueError(f"'{name}' must map settings to values, e.g. {{defense.name: p2p}}")
            entry = dict(entry or {})
            seeds = entry.pop("seeds", None)
            out[str(name)] = {"settings": entry, "seeds": seeds}
        return out


@dataclass(frozen=True)
class Cell:
    """One run of the grid; `key` is also its folder under OUT/cells."""

    labels: dict[str, str]
    seed: int
    config: ExperimentConfig = field(compare=False)

    @property
    def key(self) -> str:
        return "/".join(self.labels[a] for a in AXES) + f"/seed{self.seed}"


def load_grid(path: str | Path) -> list[Cell]:
    """The grid's cells in a stable order; config errors name the grid file and the cell."""
    path = Path(path)
    raw = read_yaml_mapping(path, "grid file")
    try:
        grid = GridConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_problems(exc)}") from exc
    base = grid.base if isinstance(grid.base, dict) else _base_config(grid.base, path)
    return expand_grid(grid, base, str(path))


def _base_config(base: str, grid_path: Path) -> dict[str, Any]:
    base_path = (grid_path.parent / base).resolve()
    if not base_path.is_file():
        raise ConfigError(f"{grid_path}: base: no such config file {base_path}")
    return read_yaml_mapping(base_path)


def expand_grid(grid: GridConfig, base: dict[str, Any], source: str = "grid") -> list[Cell]:
    cells: list[Cell] = []
    for d_name, d in grid.datasets.items():
        for a_name, a in grid.attacks.items():
            for m_name, m in grid.models.items():
                shared = [d, a, m]
                if grid.clean_floor:
                    floor = AxisEntry(settings={"attack.rate": 0, "defense.name": "none"})
                    labels = {"dataset": d_name, "attack": a_name, "defense": CLEAN, "model": m_name}
                    cells += _seeded_cells(base, labels, [*shared, floor], grid.seeds, source)
                for f_name, f in grid.defenses.items():
                    labels = {"dataset": d_name, "attack": a_name, "defense": f_name, "model": m_name}
                    cells += _seeded_cells(base, labels, [*shared, f], f.seeds or grid.seeds, source)
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys) or CLEAN in grid.defenses:
        raise ConfigError(f"{source}: names repeat across cells (and '{CLEAN}' is reserved for the clean floor)")
    return cells


def _seeded_cells(
    base: dict[str, Any], labels: dict[str, str], entries: list[AxisEntry], seeds: list[int], source: str
) -> list[Cell]:
    data = copy.deepcopy(base)
    for entry in entries:
        for key, value in entry.settings.items():
            try:
                set_dotted(data, key, copy.deepcopy(value))
            except ConfigError as exc:
                raise ConfigError(f"{source}: cell {'/'.join(labels.values())}: {exc}") from None
    cells = []
    for seed in seeds:
        data["seed"] = seed
        try:
            config = ExperimentConfig.model_validate(copy.deepcopy(data))
        except ValidationError as exc:
            raise ConfigError(
                f"{source}: cell {'/'.join(labels.values())}/seed{seed}: {validation_problems(exc)}"
            ) from exc
        cells.append(Cell(labels, seed, config))
    return cells


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' (1 <= I <= N) -> (I, N)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard '{text}': expected I/N, e.g. 2/4") from None
    if not 1 <= index <= count:
        raise ConfigError(f"--shard '{text}': I must be between 1 and N")
    return index, count


def shard_cells(cells: list[Cell], index: int, count: int) -> list[Cell]:
    """Round robin over the grid's order, so each shard gets every kind of cell; the shards partition the grid."""
    return [cell for i, cell in enumerate(cells) if i % count == index - 1]


RunFn = Callable[[ExperimentConfig, Path], dict[str, Any]]


def run_grid(
    cells: list[Cell], out: Path, shard: tuple[int, int] | None = None, run: RunFn | None = None, progress: bool = True,
    collect_only: bool = False,
) -> dict[str, int]:
    """Run the unfinished cells (of one shard); a failing cell leaves OUT/cells/KEY/error.json and the grid goes on.

    Ends by rewriting the results table over the whole grid; `collect_only` does just that, running nothing (a
    report on a grid that is still running, or whose shards ran elsewhere). Returns counts: this pass's `selected`,
    `done` (already finished), `ran`, `failed`, and `finished` over the whole grid.
    """
    if run is None:
        from .pipeline import run_experiment as run
    selected = shard_cells(cells, *shard) if shard else cells
    finished: list[Cell] = []
    todo: list[Cell] = []
    for cell in selected:
        (finished if (out / CELLS / cell.key / METRICS).is_file() else todo).append(cell)
    if collect_only and not (out / CELLS).is_dir():
        raise ConfigError(f"{out} holds no grid cells ({out / CELLS} does not exist): nothing to collect")
    stale = [c.key for c in finished if saved_config_hash(out / CELLS / c.key) != c.config.config_hash()]
    if stale and not collect_only:  # collecting marks them 'stale' in the table instead
        raise ConfigError(
            f"{len(stale)} finished cells hold runs of another config (the grid changed since), e.g. {stale[0]}; "
            f"delete them under {out / CELLS} or use another --out"
        )
    counts = {"selected": len(selected), "done": len(selected) - len(todo), "ran": 0, "failed": 0}
    if collect_only:
        todo = []
    log.info("grid: %d cells here, %d finished, %d to run", len(selected), counts["done"], len(todo))
    for cell in tqdm(todo, desc="grid", unit="cell", disable=not (progress and todo)):
        log.info("cell %s", cell.key)
        if _run_cell(cell, out / CELLS / cell.key, run):
            counts["ran"] += 1
        else:
            counts["failed"] += 1
    rows = write_results(cells, out)
    counts["finished"] = sum(row["status"] == "ok" for row in rows)
    return counts


def _run_cell(cell: Cell, cell_dir: Path, run: RunFn) -> bool:
    error_path = cell_dir / ERROR
    started = time.perf_counter()
    try:
        run(cell.config, cell_dir)
    except Exception as exc:  # a failing cell must not stop the grid; its error is kept beside it
        log.error("cell %s failed: %s", cell.key, exc)
        cell_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(error_path, {
            "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=8),
            "seconds": round(time.perf_counter() - started, 2),
        })
        return False
    error_path.unlink(missing_ok=True)
    return True


RESULT_FIELDS = (
    "cell", *AXES, "seed", "status", "config_hash", "task_type", "defense_variant", "rho", "attack_rate",
    "clean_metric", "clean_score", "attack_success_rate", "clean_count", "asr_count", "poisoned_count",
    "benign_poisoned", "dropped_rows", "dropped_poisoned", "train_seconds", "resumed_from_step", "screen_seconds",
    "defense_seconds", "eval_seconds", "wall_seconds", "inference_ms_per_1k", "detection_precision", "detection_recall",
    "clean_accuracy_accepted", "attack_success_rate_accepted", "clean_rejected", "triggered_rejected", "error",
)


def result_row(cell: Cell, out: Path) -> dict[str, Any]:
    """One tidy row: the cell's labels and status, and its metrics when it finished."""
    cell_dir = out / CELLS / cell.key
    defense = cell.config.defense
    row: dict[str, Any] = {name: None for name in RESULT_FIELDS}
    row.update(cell.labels)
    row.update(cell=cell.key, seed=cell.seed, config_hash=cell.config.config_hash(),
               rho=defense.rho if defense.has_benign_subset else None, attack_rate=cell.config.attack.rate, status="missing")
    if (cell_dir / METRICS).is_file():
        if saved_config_hash(cell_dir) != row["config_hash"]:
            return {**row, "status": "stale", "error": "holds a run of another config"}
        metrics = read_json(cell_dir / METRICS)
        row.update({k: metrics.get(k) for k in RESULT_FIELDS if k in metrics and k not in cell.labels})
        row.update(status="ok", config_hash=row["config_hash"], **_clean(metrics))
        row["screen_seconds"] = metrics.get("screen_seconds", 0.0)
        row["inference_ms_per_1k"] = inference_ms_per_1k(metrics)
    elif (cell_dir / ERROR).is_file():
        row.update(status="failed", error=read_json(cell_dir / ERROR)["error"])
    return row


def inference_ms_per_1k(metrics: dict[str, Any]) -> float | None:
    """Latency per 1,000 test inputs: the timed answers (guard included, after a warm-up batch), or, for runs that
    did not time them apart, the whole evaluation."""
    if metrics.get("inference_inputs"):
        return 1e6 * metrics["inference_seconds"] / metrics["inference_inputs"]
    evaluated = metrics["clean_count"] + metrics["asr_count"]
    return 1e6 * metrics["eval_seconds"] / evaluated if evaluated else None


def _clean(metrics: dict[str, Any]) -> dict[str, Any]:
    name, value = clean_metric(metrics)
    return {"clean_metric": name, "clean_score": value, "task_type": metrics.get("task_type", "classification")}


def write_results(cells: list[Cell], out: Path) -> list[dict[str, Any]]:
    """OUT/results.json and OUT/results.csv over every cell of the grid (not just one shard's)."""
    rows = [result_row(cell, out) for cell in cells]
    atomic_write_json(out / RESULTS_JSON, rows)
    atomic_write_text(out / RESULTS_CSV, _csv(rows))
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
