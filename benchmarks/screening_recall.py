"""How many poisoned rows each reference-based screening signal ranks among the most suspicious rows.

Usage: P2P_DATA_DIR=../shared/data python benchmarks/screening_recall.py [SETTING ...] [--cache DIR]
Fits the screening's reference (the robust config's model, `screen_epochs` of fine-tuning, seed 0) once per setting,
then scores its rows with every candidate signal (and two ways to combine the screening's two) and prints a Markdown
table against the ground truth. With --cache, the reference's probabilities and representations are kept in DIR, so
signals can be compared without refitting.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from poison2poison.config import DefenseConfig, load_config
from poison2poison.defenses.cube import cluster_rows, minority_cluster_rows
from poison2poison.defenses.lexical import lexical_scores
from poison2poison.defenses.p2p import most_suspicious
from poison2poison.defenses.runner import reference_views
from poison2poison.defenses.screening import percentile_within_label, reference_config
from poison2poison.pipeline import prepare_data

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "robust"
SETTINGS = {
    "badnets": "sst2-badnets-minilm",
    "addsent": "sst2-addsent-minilm",
    "hiddenkiller": "sst2-hiddenkiller-minilm",
    "stylebkd": "sst2-stylebkd-minilm",
}
FRACTIONS = (0.05, 0.1, 0.2, 0.3)


def spectral_scores(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Spectral signature (Tran et al., NeurIPS 2018): within each label, a row's squared projection on the top
    singular direction of the centred representations."""
    out = np.zeros(len(labels))
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        centred = embeddings[rows] - embeddings[rows].mean(axis=0)
        out[rows] = (centred @ np.linalg.svd(centred, full_matrices=False)[2][0]) ** 2
    return out


def reference_outputs(name: str, cache: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
    """(probabilities, representations, labels, texts, poison mask) of the screening reference on the training rows."""
    config = reference_config(load_config(CONFIGS / f"{name}.yaml", []))
    data = prepare_data(config)
    train = data.poisoned.train
    texts, labels, mask = [e.text for e in train], np.array([e.label for e in train]), np.array(data.poisoned.mask)
    path = cache / f"{name}-{config.config_hash()[:12]}.npz" if cache else None
    if path and path.is_file():
        saved = np.load(path)
        return saved["probs"], saved["embeddings"], labels, texts, mask
    views = reference_views(config, data.task, train)
    probs, embeddings = views.probabilities(texts), views.embeddings(texts)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, probs=probs, embeddings=embeddings)
    return probs, embeddings, labels, texts, mask


def signals(probs: np.ndarray, embeddings: np.ndarray, labels: np.ndarray, texts: list[str]) -> dict[str, np.ndarray]:
    """Each signal ranked within labels. CUBE's clustering runs here on the screening's one-epoch reference (CUBE
    itself fine-tunes its reference for the whole schedule), with CUBE's default settings."""
    doubt = 1.0 - probs[np.arange(len(labels)), labels]
    defaults = DefenseConfig()
    clusters = cluster_rows(embeddings, defaults.cube_components, defaults.cube_min_cluster_size)
    minority = np.zeros(len(labels))
    minority[minority_cluster_rows(clusters.tolist(), labels.tolist())] = 1.0
    ranked = {
        "reference (doubt)": doubt,
        "spectral": spectral_scores(embeddings, labels),
        "cube minority clusters": minority,
        "lexical": lexical_scores(texts, labels.tolist()),
    }
    ranked = {k: percentile_within_label(v, labels.tolist()) for k, v in ranked.items()}
    ranked["lexical + reference (max, as screening combines them)"] = np.maximum(ranked["lexical"],
                                                                               ranked["reference (doubt)"])
    ranked["lexical + reference (mean)"] = (ranked["lexical"] + ranked["reference (doubt)"]) / 2
    return ranked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="*", help=f"any of {', '.join(SETTINGS)} (default: all)")
    parser.add_argument("--cache", type=Path)
    args = parser.parse_args()
    unknown = set(args.settings) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown setting {sorted(unknown)[0]!r}; choose from {', '.join(SETTINGS)}")
    print("| setting | signal | poisoned rows | " + " | ".join(f"top {int(f * 100)}%" for f in FRACTIONS) + " |")
    print("|---|---|---|" + "---|" * len(FRACTIONS))
    for setting in args.settings or list(SETTINGS):
        probs, embeddings, labels, texts, mask = reference_outputs(SETTINGS[setting], args.cache)
        for signal, suspicion in signals(probs, embeddings, labels, texts).items():
            found = [int(mask[most_suspicious(suspicion.tolist(), f, texts)].sum()) for f in FRACTIONS]
            print(f"| {setting} | {signal} | {int(mask.sum())} | " + " | ".join(map(str, found)) + " |", flush=True)


if __name__ == "__main__":
    main()
