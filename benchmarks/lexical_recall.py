"""What the lexical statistics find in the robust settings, no training needed (seed 0, 3,000 rows).

Usage: P2P_DATA_DIR=../shared/data python benchmarks/lexical_recall.py
Prints two Markdown tables: how many poisoned rows the `lexical` screening signal ranks among the most suspicious rows
(the evidence behind p2p+'s drop fraction), and which rows trigger confirmation (`drop_confirmed`) leaves out, on the
robust settings plus unpoisoned SST-2, the AG News grid's data (where natural words are label-pure too),
both at a 20% poison rate, and the data of benchmarks/unbalanced_check.py (short texts, labels 2:1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from unbalanced_check import unbalanced_data

from poison2poison.config import ExperimentConfig, apply_overrides, load_config
from poison2poison.data.types import Example
from poison2poison.defenses.lexical import confirmed_triggers, lexical_scores
from poison2poison.defenses.p2p import most_suspicious
from poison2poison.defenses.screening import percentile_within_label
from poison2poison.pipeline import prepare_data

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "robust"
SETTINGS = [
    ("BadNets 1%", "sst2-badnets-minilm", ["attack.rate=0.01"]),
    ("BadNets 2%", "sst2-badnets-minilm", []),
    ("BadNets 5%", "sst2-badnets-minilm", ["attack.rate=0.05"]),
    ("BadNets 10%", "sst2-badnets-minilm", ["attack.rate=0.1"]),
    ("AddSent 3%", "sst2-addsent-minilm", []),
    ("HiddenKiller (its own file)", "sst2-hiddenkiller-minilm", []),
    ("StyleBkd 10%", "sst2-stylebkd-minilm", []),
]
FRACTIONS = (0.1, 0.2, 0.3)
AGNEWS_GRID = Path(__file__).resolve().parent / "grids" / "agnews-minilm.yaml"
CONFIRM_SETTINGS = [(title, CONFIGS / f"{name}.yaml", overrides) for title, name, overrides in SETTINGS] + [
    ("SST-2, no poison", CONFIGS / "sst2-badnets-minilm.yaml", ["attack.rate=0"]),
    ("AG News, no poison", AGNEWS_GRID, ["attack.name=badnets", "attack.rate=0"]),
    ("AG News BadNets 2%", AGNEWS_GRID, ["attack.name=badnets", "attack.rate=0.02", "attack.num_triggers=3"]),
    ("AG News BadNets 10%", AGNEWS_GRID, ["attack.name=badnets", "attack.rate=0.1", "attack.num_triggers=3"]),
    ("AG News AddSent 3%", AGNEWS_GRID, ["attack.name=addsent", "attack.rate=0.03"]),
    ("BadNets 20%", CONFIGS / "sst2-badnets-minilm.yaml", ["attack.rate=0.2"]),
    ("AG News BadNets 20%", AGNEWS_GRID, ["attack.name=badnets", "attack.rate=0.2", "attack.num_triggers=3"]),
    ("AG News AddSent 20%", AGNEWS_GRID, ["attack.name=addsent", "attack.rate=0.2"]),
]
UNBALANCED_SEEDS = (0, 1, 2)
"""Seeds of benchmarks/unbalanced_check.py's data (short SST-2 texts, labels 2:1, BadNets 3%, one word per row)."""


def poisoned_in_top(name: str, overrides: list[str]) -> tuple[int, list[int]]:
    data = prepare_data(load_config(CONFIGS / f"{name}.yaml", overrides)).poisoned
    labels = [e.label for e in data.train]
    texts = [e.text for e in data.train]
    suspicion = percentile_within_label(lexical_scores(texts, labels), labels).tolist()
    mask = np.asarray(data.mask)
    return int(mask.sum()), [int(mask[most_suspicious(suspicion, f, texts)].sum()) for f in FRACTIONS]


def setting_config(path: Path, overrides: list[str]) -> ExperimentConfig:
    """A robust config, or the `base` of a grid file, with overrides."""
    data = yaml.safe_load(path.read_text())
    return ExperimentConfig.model_validate(apply_overrides(data.get("base", data), overrides))


def confirmation(path: Path, overrides: list[str]) -> tuple[int, int, int, list[str]]:
    """(poisoned rows, rows left out, poisoned among them, confirmed n-grams)."""
    data = prepare_data(setting_config(path, overrides)).poisoned
    return confirmation_of(data.train, data.mask)


def unbalanced_confirmation(seed: int) -> tuple[int, int, int, list[str]]:
    """`confirmation` on the unbalanced check's training rows."""
    data = unbalanced_data(seed)
    return confirmation_of(data.train, data.mask)


def confirmation_of(train: list[Example], poisoned: list[bool]) -> tuple[int, int, int, list[str]]:
    finding = confirmed_triggers([e.text for e in train], [e.label for e in train])
    mask = np.asarray(poisoned, dtype=bool)
    return int(mask.sum()), len(finding.rows), int(mask[finding.rows].sum()), sorted(finding.triggers)


def main() -> None:
    print("| setting | poisoned rows | " + " | ".join(f"top {int(f * 100)}%" for f in FRACTIONS) + " |")
    print("|---|---|" + "---|" * len(FRACTIONS))
    for title, name, overrides in SETTINGS:
        total, found = poisoned_in_top(name, overrides)
        print(f"| {title} | {total} | " + " | ".join(map(str, found)) + " |", flush=True)
    print("\n| setting | poisoned rows | rows left out by confirmation | poisoned among them | confirmed n-grams |")
    print("|---|---|---|---|---|")
    for title, path, overrides in CONFIRM_SETTINGS:
        total, left_out, caught, grams = confirmation(path, overrides)
        print(f"| {title} | {total} | {left_out} | {caught} | {', '.join(grams) or '–'} |", flush=True)
    for seed in UNBALANCED_SEEDS:
        total, left_out, caught, grams = unbalanced_confirmation(seed)
        print(f"| short texts, labels 2:1, BadNets 3% (seed {seed}) | {total} | {left_out} | {caught} | "
              f"{', '.join(grams) or '–'} |", flush=True)


if __name__ == "__main__":
    main()
