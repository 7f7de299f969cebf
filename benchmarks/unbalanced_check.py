"""`p2p defend` on data unlike the SST-2 it was tuned on: short texts, labels 2:1, BadNets at 3%, as a user meets it.

Usage: P2P_DATA_DIR=../shared/data python benchmarks/unbalanced_check.py OUT [--seed S] [--rate R] [--epochs E]
       [--rows ROW ...]
Builds a labelled file from SST-2's short sentences (at most 14 words; 1,000 negative and 500 positive rows, the
minority label as the attack's target), poisons a share R of it (default 3%) with BadNets (the package's attack: one
rare word per row, relabelled positive), and writes OUT/seedS/data/train.jsonl. Each row is then one `defend()` into OUT/ROW, exactly the
path of `p2p defend --data OUT/seedS/data/train.jsonl --model minilm --task sentiment --set train.epochs=E (default 2)
--set model.freeze_embeddings=true --set ...`, and is scored through `DefendedModel` (so with the defense's trigger and
projection) on a 2:1 test set of short SST-2 test sentences (CA) and on its negative rows with a trigger word (ASR).
Rows: `clean` (the same file without its poison: the floor), `none`, `default` (`p2p+` as `p2p defend` runs it),
`random-head` (`p2p+` with `defense.benign_head=random`), and on the unpoisoned file paper P2P with the plain head
(`clean-paper`) and `p2p+` (`clean-default`), to tell what each step costs. Finished rows are reused; the table is printed at the end and
written to OUT/seedS/table.md.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

from poison2poison import DefendedModel, defend, load_config
from poison2poison.api import LEFT_OUT
from poison2poison.attacks import build_attack
from poison2poison.config import AttackConfig
from poison2poison.data import load_split
from poison2poison.data.types import Example
from poison2poison.io import atomic_write_json, atomic_write_jsonl, atomic_write_text

MAX_WORDS = 14
TRAIN_COUNTS = {0: 1000, 1: 500}
TEST_COUNTS = {0: 300, 1: 150}
TARGET = 1
ROWS = {
    "clean": ["defense.name=none"],
    "none": ["defense.name=none"],
    "default": [],
    "random-head": ["defense.benign_head=random"],
    "clean-paper": ["defense.name=p2p", "defense.benign_head=plain"],
    "clean-default": [],
}
"""Rows named clean* train on the file without its poison: what P2P's benign context (`clean-paper`) and then
`p2p+`'s drop (`clean-default`) cost the model by themselves."""


def short_unbalanced(split: str, counts: dict[int, int], rng: random.Random) -> list[Example]:
    rows = [e for e in load_split("sst2", split) if len(e.text.split()) <= MAX_WORDS]
    chosen = [e for label, n in counts.items() for e in rng.sample([e for e in rows if e.label == label], n)]
    rng.shuffle(chosen)
    return chosen


@dataclass
class UnbalancedData:
    clean: list[Example]
    """The training rows before the attack."""
    train: list[Example]
    mask: list[bool]
    """Which training rows the attack poisoned."""
    test: list[Example]
    triggered: list[Example]
    """Triggered non-target test rows."""


def unbalanced_data(seed: int, rate: float = 0.03) -> UnbalancedData:
    """The short, 2:1 training and test rows of a seed, the training rows poisoned with one BadNets word each."""
    rng = random.Random(seed)
    clean, test = short_unbalanced("train", TRAIN_COUNTS, rng), short_unbalanced("test", TEST_COUNTS, rng)
    attack = build_attack(AttackConfig(name="badnets", rate=rate, target=TARGET, num_triggers=1), "sst2", 2)
    poisoned = attack.poison(clean, test, rng)
    return UnbalancedData(clean, poisoned.train, poisoned.mask, test, poisoned.asr_test)


def write_jsonl(path: Path, rows: list[Example]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(path, ({"text": e.text, "label": e.label} for e in rows))


def poisoned_left_out(folder: Path, mask: list[bool]) -> str:
    """'K of P': how many of the P poisoned rows are among the rows `defend` left out of training (its
    left_out.jsonl, rows counted from 1); '–' where it left nothing out."""
    listed = folder / LEFT_OUT
    if not listed.is_file():
        return "–"
    rows = {json.loads(line)["row"] for line in listed.read_text().splitlines()}
    return f"{sum(mask[row - 1] for row in rows)} of {sum(mask)}"


def score(folder: Path, test: list[Example], triggered: list[Example]) -> dict[str, float]:
    model = DefendedModel.load(folder)
    clean = model.predict_ids([e.text for e in test])
    fired = model.predict_ids([e.text for e in triggered])
    return {
        "clean_accuracy": sum(p == e.label for p, e in zip(clean, test)) / len(test),
        "attack_success_rate": sum(p == TARGET for p in fired) / len(fired),
        "predicted_positive": sum(clean) / len(clean),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.03)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--rows", nargs="*", choices=list(ROWS), default=list(ROWS))
    args = parser.parse_args()
    out = args.out / f"seed{args.seed}"
    data = unbalanced_data(args.seed, args.rate)
    write_jsonl(out / "data" / "train.jsonl", data.train)
    write_jsonl(out / "data" / "clean.jsonl", data.clean)
    test, triggered = data.test, data.triggered
    base = [f"train.epochs={args.epochs}", "model.freeze_embeddings=true", f"seed={args.seed}"]
    lines = ["| row | CA | ASR | share of clean test rows answered positive (truth 0.333) | poisoned rows left out |",
             "|---|---|---|---|---|"]
    for row in args.rows:
        path = out / "data" / ("clean.jsonl" if row.startswith("clean") else "train.jsonl")
        config = load_config(None, ["defense.name=p2p+", *base, *ROWS[row]])
        defend(path, "minilm", out / row, config=config, task="sentiment")
        result = score(out / row, test, triggered)
        atomic_write_json(out / row / "check.json", result)
        lines.append(f"| {row} | {result['clean_accuracy']:.3f} (n={len(test)}) | "
                     f"{result['attack_success_rate']:.3f} (n={len(triggered)}) | {result['predicted_positive']:.3f} | "
                     f"{poisoned_left_out(out / row, [] if row.startswith('clean') else data.mask)} |")
        print(lines[-1], flush=True)
    atomic_write_text(out / "table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
