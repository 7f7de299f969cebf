"""The security table (docs/security.md): attacks by an adversary who knows P2P, against paper P2P with the published
trigger, P2P with a secret trigger and `p2p+`, beside the clean floor.

Usage: python benchmarks/security_summary.py OUT
Reads the finished cells OUT/SETTING/ROW/seedK (as benchmarks/security_all.sh writes them; a row is
[VARIANT-]DEFENSE, benchmarks/security_rows.txt) and prints two Markdown tables: CA / ASR, mean ± std over the seeds
that finished, a line per setting and variant, a column per defense; then each defense's ASR over the clean floor
of its setting and its CA under it, in points, over the seeds both have, with whether it meets the project's goal
(CA within 1 point, ASR within 3 points of the floor).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from robust_summary import ASR_GOAL, CA_GOAL, cell, mean_of

from poison2poison.summary import collect_metrics

SETTINGS = {
    "sst2-p2paware-badnets-minilm": "p2p-aware, BadNets 2%",
    "sst2-p2paware-addsent-minilm": "p2p-aware, AddSent 3%",
    "sst2-p2pguess-badnets-minilm": "p2p-guess, BadNets 2%",
    "sst2-badnets-minilm": "BadNets 2% (not adaptive)",
    "sst2-badnets-tiny": "BadNets 2%, `tiny` (not adaptive)",
    "sst2-p2paware-badnets-smollm2": "p2p-aware, BadNets 10%, SmolLM2",
}
SAME_FLOOR = {"sst2-p2pguess-badnets-minilm": "sst2-p2paware-badnets-minilm"}
"""Settings whose clean floor is another setting's run: at rate 0 the two attacks write the same training and test
rows (tests/test_adaptive_attacks.py), so the floor is run once."""
DEFENSES = ["none", "p2p-official", "p2p-secret", "p2p+-official", "p2p+-secret"]
VARIANTS = {"": "", "nocue": "no cue", "rate1": "1%", "rate5": "5%"}
FLOOR = "clean"

Runs = list[dict[str, Any]]


def split_row(row: str) -> tuple[str, str]:
    """(variant, defense) of a row name: `rate5-p2p-secret` -> ('rate5', 'p2p-secret')."""
    head, _, rest = row.partition("-")
    return (head, rest) if head in VARIANTS and rest else ("", row)


def finished(folder: Path) -> dict[str, Runs]:
    return collect_metrics([folder]) if folder.is_dir() else {}


def lines(out: Path) -> list[tuple[str, Runs, dict[str, Runs]]]:
    """(title, the setting's clean floor, {defense: runs}) per setting and variant that has any finished run."""
    found = []
    for setting, title in SETTINGS.items():
        groups = finished(out / setting)
        floor = groups.get(FLOOR) or finished(out / SAME_FLOOR.get(setting, setting)).get(FLOOR, [])
        by_variant: dict[str, dict[str, Runs]] = {}
        for row, runs in groups.items():
            variant, defense = split_row(row)
            if defense in DEFENSES:
                by_variant.setdefault(variant, {})[defense] = runs
        for variant, label in VARIANTS.items():
            if variant in by_variant:
                found.append((f"{title}, {label}" if label else title, floor, by_variant[variant]))
    return found


def results_table(found: list[tuple[str, Runs, dict[str, Runs]]]) -> str:
    header = ["attack", "clean floor", *DEFENSES]
    rows = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for title, floor, runs in found:
        rows.append(f"| {title} | {cell(floor)} | " + " | ".join(cell(runs.get(d, [])) for d in DEFENSES) + " |")
    return "\n".join(rows)


def against_floor(floor: Runs, runs: Runs) -> str:
    """'CA gap / ASR excess (goal)' in points over the seeds both finished, or '–'."""
    seeds = {r["seed"] for r in floor} & {r["seed"] for r in runs}
    if not seeds:
        return "–"
    floor, runs = [r for r in floor if r["seed"] in seeds], [r for r in runs if r["seed"] in seeds]
    ca_gap = mean_of(floor, "clean_accuracy") - mean_of(runs, "clean_accuracy")
    asr_excess = mean_of(runs, "attack_success_rate") - mean_of(floor, "attack_success_rate")
    meets = ca_gap <= CA_GOAL and asr_excess <= ASR_GOAL
    return f"{100 * ca_gap:+.1f} / {100 * asr_excess:+.1f} ({'meets' if meets else 'misses'}, {len(seeds)})"


def floor_table(found: list[tuple[str, Runs, dict[str, Runs]]]) -> str:
    rows = ["| attack | " + " | ".join(DEFENSES) + " |", "|---" * (len(DEFENSES) + 1) + "|"]
    for title, floor, runs in found:
        rows.append(f"| {title} | " + " | ".join(against_floor(floor, runs.get(d, [])) for d in DEFENSES) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder security_all.sh wrote (e.g. runs/security)")
    args = parser.parse_args()
    found = lines(args.out)
    print("CA / ASR, mean ± std (seeds)\n")
    print(results_table(found))
    print("\nAgainst the clean floor: CA under it / ASR over it, in points, from the means over the seeds both have "
          "(goal: CA within 1, ASR within 3)\n")
    print(floor_table(found))


if __name__ == "__main__":
    main()
