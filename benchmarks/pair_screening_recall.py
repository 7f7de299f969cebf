"""What `p2p+` for generation leaves out of training, against the ground truth, with no training at all.

Usage: P2P_DATA_DIR=../shared/data python benchmarks/pair_screening_recall.py [CONFIG ...] [--seeds 0 1 2]
CONFIG is a generation run config (default: the SmolLM2 generation settings, configs/llm). For each seed, the
config's poisoned training subsample goes through the trigger-pair confirmation that `p2p+` runs on text pairs
(`lexical.generation_triggers`: label-pure input n-grams where the outputs are labels in disguise, input/output
n-gram pairs beyond chance on free text), and the script prints the poisoned pairs, how many of them carry a
confirmed trigger and are left out, how many clean pairs are left out with them, and the confirmed pairs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from poison2poison.config import load_config
from poison2poison.defenses.lexical import generation_triggers
from poison2poison.generation_pipeline import prepare_generation_data

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "llm"
DEFAULT = [CONFIGS / f"{name}-smollm2.yaml" for name in (
    "sst2-dpa-badnet", "sst2-dpa-ctba", "sst2-dpa-vpi", "samsum-phrase", "gsm8k-badchain")]
SHOWN = 4
"""Confirmed pairs printed per row; the rest are counted."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    args = parser.parse_args()
    print("| setting | seed | pairs | poisoned | poisoned left out | clean left out | confirmed (input -> output) |")
    print("|---|---|---|---|---|---|---|")
    for path in args.configs or DEFAULT:
        for seed in args.seeds:
            config = load_config(path, [f"seed={seed}", "defense.name=p2p+"])
            data = prepare_generation_data(config).poisoned
            finding = generation_triggers([p.source for p in data.train], [p.target for p in data.train],
                                          config.defense.screen_min_count)
            dropped = set(finding.rows)
            poisoned = {i for i, m in enumerate(data.mask) if m}
            pairs = [f"`{k}` -> `{v}`" for k, v in list(finding.pairs.items())[:SHOWN]]
            more = len(finding.pairs) - SHOWN
            shown = ", ".join(pairs) + (f" and {more} more" if more > 0 else "") if pairs else "none"
            print(f"| {path.stem} | {seed} | {len(data.train)} | {len(poisoned)} | {len(dropped & poisoned)} | "
                  f"{len(dropped - poisoned)} | {shown} |", flush=True)


if __name__ == "__main__":
    main()
