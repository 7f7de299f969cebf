"""The robust P2P table across settings, and the goal check of the default (docs/robust.md).

Usage: python benchmarks/robust_summary.py OUT [--rows ROW ...] [--settings SETTING ...]
Reads the finished cells OUT/SETTING/ROW/seedK (as benchmarks/robust_table.sh writes them) and prints two Markdown
tables: CA / ASR, mean ± std over the seeds that finished, one column per setting; then, for `default` (`p2p+`)
against the clean floor of its setting, how far CA and ASR are from the goal (CA within 1 point of the clean model,
ASR within 3 points of the floor), against the rate-0 floor and, where it ran, the paired floor, over the
seeds both have.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from poison2poison.summary import collect_metrics, mean_std

HERE = Path(__file__).resolve().parent
SETTINGS = {
    "sst2-badnets-minilm": "BadNets 2%",
    "sst2-addsent-minilm": "AddSent 3%",
    "sst2-hiddenkiller-minilm": "HiddenKiller",
    "sst2-stylebkd-minilm": "StyleBkd 10%",
    "sst2-badnets-tiny": "BadNets 2%, `tiny`",
}
CA_GOAL, ASR_GOAL = 0.01, 0.03
FLOORS = {"clean": "clean floor", "clean-paired": "paired floor"}


def row_names() -> list[str]:
    """The rows of robust_rows.txt, in its order."""
    lines = (HERE / "robust_rows.txt").read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


def cell(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "–"
    ca = mean_std([r["clean_accuracy"] for r in runs])
    asr = mean_std([r["attack_success_rate"] for r in runs])
    return f"{ca} / {asr} ({len(runs)})"


def setting_groups(out: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{setting: {row: [metrics, ...]}} for every setting, read once."""
    return {setting: collect_metrics([out / setting]) if (out / setting).is_dir() else {} for setting in SETTINGS}


def results_table(groups: dict[str, dict[str, list[dict[str, Any]]]], rows: list[str], settings: list[str]) -> str:
    groups = {setting: groups[setting] for setting in settings}
    present = [row for row in rows if any(row in g for g in groups.values())]
    lines = ["| row | " + " | ".join(SETTINGS[s] for s in settings) + " |", "|---" * (len(settings) + 1) + "|"]
    for row in present:
        lines.append(f"| {row} | " + " | ".join(cell(groups[s].get(row, [])) for s in settings) + " |")
    return "\n".join(lines)


def mean_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.mean(r[key] for r in runs)


def goal_table(groups: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """CA gap and ASR excess of `default` against each floor, over the seeds both finished: 'meets' needs both
    within the goal."""
    lines = ["| setting | floor | floor CA / ASR | default CA / ASR | CA under the floor | ASR over the floor | goal |",
             "|---|---|---|---|---|---|---|"]
    for setting, title in SETTINGS.items():
        rows = groups[setting]
        for floor_row, floor_title in FLOORS.items():
            seeds = {r["seed"] for r in rows.get("default", [])} & {r["seed"] for r in rows.get(floor_row, [])}
            if not seeds:
                continue
            floor = [r for r in rows[floor_row] if r["seed"] in seeds]
            default = [r for r in rows["default"] if r["seed"] in seeds]
            ca_gap = mean_of(floor, "clean_accuracy") - mean_of(default, "clean_accuracy")
            asr_excess = mean_of(default, "attack_success_rate") - mean_of(floor, "attack_success_rate")
            meets = ca_gap <= CA_GOAL and asr_excess <= ASR_GOAL
            lines.append(
                f"| {title} | {floor_title} | {cell(floor)} | {cell(default)} | "
                f"{100 * ca_gap:+.1f} | {100 * asr_excess:+.1f} | {'meets' if meets else 'misses'} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder robust_table.sh wrote (e.g. runs/robust)")
    parser.add_argument("--rows", nargs="+", default=None, help="rows to show (default: every row that ran)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS),
                        help="columns to show (default: every setting)")
    args = parser.parse_args()
    print("CA / ASR, mean ± std (seeds)\n")
    groups = setting_groups(args.out)
    print(results_table(groups, args.rows or row_names(), args.settings))
    print("\nThe default (`p2p+`) against the goal: CA within 1 point of the clean model, ASR within 3 points of the "
          "floor (points, from the means)\n")
    print(goal_table(groups))


if __name__ == "__main__":
    main()
