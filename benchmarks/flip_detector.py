"""P2P's flip detector against STRIP's detection, on the same test rows: precision and recall of flagging triggered
inputs.

Usage: P2P_DATA_DIR=../shared/data python benchmarks/flip_detector.py OUT SETTING [SETTING ...]
           [--seeds 0 1 2] [--rows paper-random default] [--strip-row strip]

OUT holds run folders OUT/SETTING/ROW/seedS as benchmarks/robust_table.sh writes them; benchmarks/detector_table.sh
trains the ones this needs. For each P2P run, the run's clean test rows and its triggered non-target rows (rebuilt
from its config.yaml, exactly as the run evaluated them) are answered with the defense and without it by the code of
`p2p serve`'s `detect`, and an input is flagged where the two answers differ. Precision is flagged triggered inputs
over flagged inputs, recall flagged triggered inputs over triggered inputs: the definitions of STRIP's
`detection_precision` and `detection_recall` in its run's metrics.json, on the same rows (same setting and seed).
The flags of a run are kept beside it (SEED.flips.json), so a second call only reads them. Prints a Markdown table,
mean ± std over the seeds found; a missing run is named and left out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from poison2poison import DefendedModel, load_config
from poison2poison.io import atomic_write_json, read_json
from poison2poison.metrics import detection_scores
from poison2poison.pipeline import prepare_data
from poison2poison.serve.backends import ClassifierBackend, ClassifyItem

CHUNK = 64


def flags(backend: ClassifierBackend, texts: list[str]) -> list[bool]:
    items = [ClassifyItem(text, detect=True) for text in texts]
    return [bool(a.suspected_trigger) for i in range(0, len(items), CHUNK) for a in backend.answer(items[i : i + CHUNK])]


def flip_counts(run_dir: Path) -> dict[str, int]:
    """Flagged and total inputs of the run's clean and triggered test sets; computed once, then read back."""
    cached = run_dir.parent / f"{run_dir.name}.flips.json"
    if cached.is_file():
        return read_json(cached)
    data = prepare_data(load_config(run_dir / "config.yaml"))
    backend = ClassifierBackend(DefendedModel.load(run_dir))
    clean = flags(backend, [e.text for e in data.test])
    triggered = flags(backend, [e.text for e in data.poisoned.asr_test])
    counts = {"clean_flagged": sum(clean), "clean_count": len(clean), "triggered_flagged": sum(triggered),
              "triggered_count": len(triggered)}
    atomic_write_json(cached, counts)
    return counts


def strip_counts(run_dir: Path) -> dict[str, int]:
    metrics = read_json(run_dir / "metrics.json")
    return {"clean_flagged": metrics["clean_rejected"], "clean_count": metrics["clean_count"],
            "triggered_flagged": metrics["triggered_rejected"], "triggered_count": metrics["asr_count"]}


def summary(per_seed: list[dict[str, int]]) -> list[str]:
    """Precision and recall, mean ± std over seeds, and the summed counts."""
    scores = [detection_scores(c["triggered_flagged"], c["triggered_flagged"] + c["clean_flagged"],
                               c["triggered_count"]) for c in per_seed]
    cells = []
    for name in ("detection_precision", "detection_recall"):
        values = [s[name] for s in scores if s[name] is not None]
        if not values:
            cells.append("—")
        else:
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.3f}{spread}")
    total = {k: sum(c[k] for c in per_seed) for k in per_seed[0]}
    return cells + [f"{total['clean_flagged']}/{total['clean_count']}",
                    f"{total['triggered_flagged']}/{total['triggered_count']}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("settings", nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rows", nargs="+", default=["paper-random", "default"], help="P2P rows to read flips from")
    parser.add_argument("--strip-row", default="strip")
    args = parser.parse_args()
    detectors = [(row, f"flip ({row})", flip_counts) for row in args.rows]
    detectors.append((args.strip_row, f"STRIP ({args.strip_row})", strip_counts))
    table = ["| setting | detector | seeds | precision | recall | clean flagged | triggered flagged |",
             "|---|---|---|---|---|---|---|"]
    for setting in args.settings:
        for row, label, counts_of in detectors:
            found = {}
            for seed in args.seeds:
                run_dir = args.out / setting / row / f"seed{seed}"
                if (run_dir / "metrics.json").is_file():
                    found[seed] = counts_of(run_dir)
                else:
                    print(f"missing: {run_dir} (no finished run)", file=sys.stderr)
            if found:
                cells = [setting, label, ", ".join(map(str, found)), *summary(list(found.values()))]
                table.append("| " + " | ".join(cells) + " |")
    print("\n".join(table))  # at the end, in one piece: the model's progress display may write to stdout

if __name__ == "__main__":
    main()
