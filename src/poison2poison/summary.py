"""Tables of finished runs: metrics.json files grouped by run name, mean +- std over seeds."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from .io import read_json

METRICS = "metrics.json"


def collect_metrics(paths: Iterable[Path]) -> dict[str, list[dict[str, Any]]]:
    """{group: [metrics, ...]}; a run at RUN/NAME/seedK is grouped as NAME, any other run by its folder name."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in paths:
        found = [path / METRICS] if (path / METRICS).is_file() else sorted(path.rglob(METRICS))
        for metrics_path in found:
            run = metrics_path.parent
            name = run.parent.name if run.name.startswith("seed") else run.name
            groups[name].append(read_json(metrics_path))
    return dict(sorted(groups.items()))


def mean_std(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


COLUMNS = ("run", "defense", "seeds", "CA", "ASR", "CA n", "ASR n", "poisoned rows", "fine-tune s", "wall s")


def markdown_table(groups: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for name, runs in groups.items():
        first = runs[0]
        defense = first["defense"] + (f" ({first['defense_source']})" if first.get("defense_source") else "")
        cells = [
            name,
            defense,
            ", ".join(str(r["seed"]) for r in runs),
            mean_std([r["clean_accuracy"] for r in runs]),
            mean_std([r["attack_success_rate"] for r in runs]),
            str(first["clean_count"]),
            str(first["asr_count"]),
            str(first["poisoned_count"]),
            mean_std([r["train_seconds"] for r in runs], 0),
            mean_std([r["wall_seconds"] for r in runs], 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
