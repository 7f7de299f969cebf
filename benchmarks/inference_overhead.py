"""What the benign trigger costs at inference, measured on one trained model so that nothing else differs.

Usage: P2P_DATA_DIR=../shared/data python benchmarks/inference_overhead.py RUN_DIR [RUN_DIR ...] [--rounds 5]

RUN_DIR is a finished P2P run (`p2p run`, or a cell of `p2p bench`). Its model answers the run's clean test set
three ways, in interleaved rounds: as its defense presents queries (trigger and cue), the same with the trigger's
keys and values recomputed for every prompt (causal LMs: no shared-prefix cache), and with no trigger at all (what an
undefended model of the same size is shown). Prints the median seconds of each and the ratios, as Markdown. Run it
alone on the machine: whole-grid timings drift by 10-20% over a process's life, which hides a 5% effect.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from poison2poison.config import load_config
from poison2poison.data.catalog import load_split
from poison2poison.inference import score_samples
from poison2poison.io import read_json
from poison2poison.models import load_saved_model
from poison2poison.rundir import MANIFEST
from poison2poison.seeding import stage_rng, stratified_sample
from poison2poison.specs import InferenceSpec, plain_spec


def clean_test_texts(run_dir: Path) -> list[str]:
    config = load_config(run_dir / "config.yaml")
    test = load_split(config.data.dataset, config.data.test_split)
    keep = stratified_sample([e.label for e in test], config.data.test_size, stage_rng(config.seed, "test-subsample"))
    return [test[i].text for i in keep]


def timed(fn, rounds: int) -> list[float]:
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def measure(run_dir: Path, rounds: int) -> list[str]:
    manifest = read_json(run_dir / MANIFEST)
    spec = InferenceSpec.from_json(manifest["inference"])
    loaded = load_saved_model(run_dir / "model")
    texts, length = clean_test_texts(run_dir), int(manifest["max_length"])
    plain = InferenceSpec("none", "", plain_spec("none", 1).cue, spec.label_of_output)  # the same outputs, no trigger
    ways = {
        "trigger": lambda: score_samples(loaded, [spec.present(t) for t in texts], length),
        "trigger, no prefix cache": lambda: score_samples(loaded, [spec.present(t) for t in texts], length,
                                                          reuse_prefix=False),
        "no trigger": lambda: score_samples(loaded, [plain.present(t) for t in texts], length),
    }
    if loaded.kind != "causal":
        del ways["trigger, no prefix cache"]  # an encoder attends both ways: there is no prefix to reuse
    ways["no trigger"]()  # untimed warm-up
    results = {name: [] for name in ways}
    for _ in range(rounds):  # interleaved, so drift hits every way alike
        for name, fn in ways.items():
            results[name] += timed(fn, 1)
    base = statistics.median(results["no trigger"])
    return [f"| {run_dir} | {loaded.kind} | {len(texts)} | {name} | {statistics.median(s):.2f} | {statistics.median(s) / base:.3f} |"
            for name, s in results.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print("| run | model | inputs | queries | median s | × no trigger |")
    print("|---|---|---|---|---|---|")
    for run_dir in args.runs:
        print("\n".join(measure(run_dir, args.rounds)), flush=True)


if __name__ == "__main__":
    main()
