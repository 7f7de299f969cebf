"""Tables of finished runs: metrics.json files grouped by run name, mean +- std over seeds."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from .config import trains_benign_subset
from .io import read_json
from .rundir import METRICS


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


def format_mean_std(mean: float, std: float, count: int, digits: int = 3) -> str:
    """'mean ± std', or the value alone when there is one."""
    if count == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def mean_std(values: list[float], digits: int = 3) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return format_mean_std(statistics.mean(values), std, len(values), digits)


def fine_tune_seconds_text(runs: Sequence[dict[str, Any]]) -> str:
    """Fine-tune seconds over the runs timed from the first step. A resumed run adds the seconds its checkpoint
    recorded (`resumed_seconds`); one resumed by an older version, which timed only the steps after its checkpoint,
    is left out and counted."""
    whole = [r["train_seconds"] for r in runs if not r.get("resumed_from_step") or "resumed_seconds" in r]
    text = mean_std(whole, 0) if whole else "–"
    partial = len(runs) - len(whole)
    return f"{text} ({partial} resumed, timed in part)" if partial else text


COLUMNS = (
    "run", "defense", "seeds", "CA", "ASR", "CA n", "ASR n", "poisoned rows", "poisoned in benign", "dropped (poisoned)",
    "fine-tune s", "screen s", "wall s",
)


def defense_label(metrics: dict[str, Any]) -> str:
    if metrics.get("defense_variant"):
        return str(metrics["defense_variant"])
    return metrics["defense"] + (f" ({metrics['defense_source']})" if metrics.get("defense_source") else "")


def defense_effect(runs: list[dict[str, Any]]) -> tuple[str, str]:
    """(poisoned rows in the benign subset, rows dropped (of them poisoned)); dashes for a defense without them."""
    if "benign_rows" not in runs[0] or not trains_benign_subset(runs[0]["defense"]):
        return "–", "–"
    benign = mean_std([r["benign_poisoned"] for r in runs], 1)
    dropped = f"{mean_std([r['dropped_rows'] for r in runs], 0)} ({mean_std([r['dropped_poisoned'] for r in runs], 1)})"
    return benign, dropped


def is_generation(metrics: dict[str, Any]) -> bool:
    return metrics.get("task_type") == "generation"


def clean_metric(metrics: dict[str, Any]) -> tuple[str, float]:
    """(name, value) of a run's clean metric: CA for classification, the task's headline metric for generation."""
    if is_generation(metrics):
        return str(metrics["clean_metric"]), float(metrics["clean_score"])
    return "CA", float(metrics["clean_accuracy"])


def markdown_table(groups: dict[str, list[dict[str, Any]]]) -> str:
    """One table for classification runs and one for generation runs, each present only when it has rows."""
    classification = {k: v for k, v in groups.items() if not is_generation(v[0])}
    generation = {k: v for k, v in groups.items() if is_generation(v[0])}
    tables = [classification_table(classification)] if classification or not generation else []
    if generation:
        tables.append(generation_table(generation))
    return "\n\n".join(tables)


GENERATION_COLUMNS = (
    "run", "defense", "seeds", "clean metric", "clean", "ASR", "backdoor step", "fires on clean", "clean n", "ASR n",
    "poisoned rows", "poisoned in benign", "no prefix (clean / triggered)", "fine-tune s", "wall s",
)


def markdown_rows(columns: Sequence[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows])


def generation_table(groups: dict[str, list[dict[str, Any]]]) -> str:
    rows: list[list[str]] = []
    for name, runs in groups.items():
        first = runs[0]
        p2p = trains_benign_subset(first["defense"])
        cells = [
            name,
            defense_label(first),
            ", ".join(str(r["seed"]) for r in runs),
            str(first["clean_metric"]),
            mean_std([r["clean_score"] for r in runs]),
            mean_std([r["attack_success_rate"] for r in runs]),
            mean_std([r["backdoor_step_rate"] for r in runs]) if "backdoor_step_rate" in first else "–",
            _clean_firing(runs),
            str(first["clean_count"]),
            str(first["asr_count"]),
            str(first["poisoned_count"]),
            mean_std([r["benign_poisoned"] for r in runs], 1) if p2p else "–",
            (f"{mean_std([r['missing_prefix_clean'] for r in runs], 1)} / "
             f"{mean_std([r['missing_prefix_triggered'] for r in runs], 1)}") if p2p else "–",
            fine_tune_seconds_text(runs),
            mean_std([r["wall_seconds"] for r in runs], 0),
        ]
        rows.append(cells)
    return markdown_rows(GENERATION_COLUMNS, rows)


def _clean_firing(runs: list[dict[str, Any]]) -> str:
    """The attack's side signal on clean inputs (its backdoor firing without the trigger), when the run has one."""
    key = next((k for k in runs[0] if k.endswith("_rate_clean")), None)
    return mean_std([r[key] for r in runs]) if key and all(key in r for r in runs) else "–"


def classification_table(groups: dict[str, list[dict[str, Any]]]) -> str:
    rows: list[list[str]] = []
    for name, runs in groups.items():
        first = runs[0]
        cells = [
            name,
            defense_label(first),
            ", ".join(str(r["seed"]) for r in runs),
            mean_std([r["clean_accuracy"] for r in runs]),
            mean_std([r["attack_success_rate"] for r in runs]),
            str(first["clean_count"]),
            str(first["asr_count"]),
            str(first["poisoned_count"]),
            *defense_effect(runs),
            fine_tune_seconds_text(runs),
            mean_std([r.get("screen_seconds", 0.0) for r in runs], 0),
            mean_std([r["wall_seconds"] for r in runs], 0),
        ]
        rows.append(cells)
    return markdown_rows(COLUMNS, rows)


GOAL_ASR_MARGIN = 0.03
"""The project's goal for a defense: ASR at most this far above the clean floor's..."""
GOAL_CA_MARGIN = 0.01
"""...and CA at most this far below the clean floor's."""


def goal_verdict(floor: dict[str, Any], attacked: dict[str, Any], defended: dict[str, Any]) -> str:
    """One line that says whether the defended run meets the goal against the clean floor, with the figures."""
    ca_gap = defended["clean_accuracy"] - floor["clean_accuracy"]
    asr_gap = defended["attack_success_rate"] - floor["attack_success_rate"]
    met = asr_gap <= GOAL_ASR_MARGIN and ca_gap >= -GOAL_CA_MARGIN
    return (
        f"{'goal met' if met else 'goal missed'}: {defended.get('defense_variant', defended['defense'])} brought ASR "
        f"from {attacked['attack_success_rate']:.3f} (no defense) to {defended['attack_success_rate']:.3f}, "
        f"{asr_gap * 100:+.1f} points from the clean floor's {floor['attack_success_rate']:.3f} (goal: at most "
        f"+{GOAL_ASR_MARGIN * 100:.0f}), with CA {defended['clean_accuracy']:.3f}, {ca_gap * 100:+.1f} points from "
        f"the floor's {floor['clean_accuracy']:.3f} (goal: at least -{GOAL_CA_MARGIN * 100:.0f})"
    )
