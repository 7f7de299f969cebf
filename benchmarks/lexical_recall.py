"""How many poisoned rows the `lexical` screening signal ranks among the most suspicious rows (no training needed).

Usage: P2P_DATA_DIR=../shared/data python benchmarks/lexical_recall.py
Prints a Markdown table for the robust settings (configs/robust/, seed 0): the evidence behind p2p+'s drop fraction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poison2poison.config import load_config
from poison2poison.defenses.p2p import most_suspicious
from poison2poison.pipeline import prepare_data
from poison2poison.screening import lexical_scores, percentile_within_label

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


def poisoned_in_top(name: str, overrides: list[str]) -> tuple[int, list[int]]:
    data = prepare_data(load_config(CONFIGS / f"{name}.yaml", overrides)).poisoned
    labels = [e.label for e in data.train]
    texts = [e.text for e in data.train]
    suspicion = percentile_within_label(lexical_scores(texts, labels), labels).tolist()
    mask = np.asarray(data.mask)
    return int(mask.sum()), [int(mask[most_suspicious(suspicion, f, texts)].sum()) for f in FRACTIONS]


def main() -> None:
    print("| setting | poisoned rows | " + " | ".join(f"top {int(f * 100)}%" for f in FRACTIONS) + " |")
    print("|---|---|" + "---|" * len(FRACTIONS))
    for title, name, overrides in SETTINGS:
        total, found = poisoned_in_top(name, overrides)
        print(f"| {title} | {total} | " + " | ".join(map(str, found)) + " |", flush=True)


if __name__ == "__main__":
    main()
