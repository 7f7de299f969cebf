"""Can the pretrained encoder's own representations, with no fine-tune, find the poison that screening misses?

Usage: P2P_DATA_DIR=../shared/data python benchmarks/frozen_recall.py [SETTING ...] [--trusted N]
For each robust setting (seed 0, its 3,000-row subsample), the rows are embedded by the frozen MiniLM (mean-pooled
hidden states of every layer) and scored by three signals that need no training of the model, each ranked within
the row's label as the screening ranks its signals:
- `knn agreement`: the share of a row's 10 nearest neighbours (cosine, one layer) that carry its label; a planted
  style or template would gather rows of one label whatever their content.
- `contrast`: the row's distance from the other labels' rows along the direction in which its label varies most
  against them (the top generalised eigenvector of the two covariances; a planted sub-population adds variance in
  one label only).
- `trusted doubt`: 1 - the probability a logistic regression fitted on N vouched clean rows from outside the
  subsample (the `trusted_size` simulation) gives the row's label; dirty-label poison keeps its original content.
It prints the poisoned rows among the most suspicious 5 / 10 / 20 / 30% of rows, at the layer where each signal does
best at 10% (chosen with the ground truth, so the figures flatter the signals), and, as a ceiling, the AUROC of a
probe fitted on the poison mask itself (cross-validated): whether the representations hold the information at all.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.linalg import eigh
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.neighbors import NearestNeighbors
from transformers import AutoModel, AutoTokenizer

from poison2poison.config import load_config
from poison2poison.defenses.p2p import most_suspicious
from poison2poison.defenses.runner import simulated_trusted_set
from poison2poison.defenses.screening import percentile_within_label
from poison2poison.models.loading import resolve_model_source
from poison2poison.pipeline import prepare_data

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "robust"
SETTINGS = ("sst2-badnets-minilm", "sst2-addsent-minilm", "sst2-hiddenkiller-minilm", "sst2-stylebkd-minilm")
FRACTIONS = (0.05, 0.1, 0.2, 0.3)
NEIGHBOURS = 10
SHRINK = 0.1
"""Shrinkage of the other labels' covariance towards its mean variance, so that the generalised eigenproblem is
well posed with 384 dimensions and about a thousand rows."""


def layer_embeddings(texts: list[str], max_length: int, batch: int = 64) -> list[np.ndarray]:
    """Mean-pooled hidden states of every layer of the frozen MiniLM (embeddings first)."""
    source = resolve_model_source("minilm")
    tokenizer, model = AutoTokenizer.from_pretrained(source), AutoModel.from_pretrained(source).eval()
    pooled: list[list[np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, len(texts), batch):
            enc = tokenizer(texts[start:start + batch], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            states = model(**enc, output_hidden_states=True).hidden_states
            weights = enc["attention_mask"].unsqueeze(-1).float()
            means = [((h * weights).sum(1) / weights.sum(1)).numpy() for h in states]
            pooled = pooled or [[] for _ in means]
            for layer, mean in zip(pooled, means):
                layer.append(mean)
    return [np.concatenate(layer) for layer in pooled]


def knn_agreement(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    neighbours = NearestNeighbors(n_neighbors=NEIGHBOURS + 1).fit(unit).kneighbors(unit)[1][:, 1:]
    return (labels[neighbours] == labels[:, None]).mean(axis=1)


def contrast(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row, squared distance from the other labels' rows along its own label's top contrast direction."""
    out = np.zeros(len(labels))
    for label in np.unique(labels):
        own, other = labels == label, labels != label
        other_cov = np.cov(x[other].T)
        other_cov = (1 - SHRINK) * other_cov + SHRINK * np.trace(other_cov) / len(other_cov) * np.eye(len(other_cov))
        direction = eigh(np.cov(x[own].T), other_cov)[1][:, -1]
        projection = x @ direction
        out[own] = ((projection[own] - projection[other].mean()) / projection[other].std()) ** 2
    return out


def trusted_doubt(x: np.ndarray, labels: np.ndarray, vouched_x: np.ndarray, vouched_labels: np.ndarray) -> np.ndarray:
    probs = LogisticRegression(max_iter=3000).fit(vouched_x, vouched_labels).predict_proba(x)
    return 1.0 - probs[np.arange(len(labels)), labels]


def recall(suspicion: np.ndarray, labels: np.ndarray, mask: np.ndarray, texts: list[str]) -> list[int]:
    ranked = percentile_within_label(suspicion, labels.tolist()).tolist()
    return [int(mask[most_suspicious(ranked, f, texts)].sum()) for f in FRACTIONS]


def signal_scores(layer: np.ndarray, labels: np.ndarray, vouched_labels: np.ndarray) -> dict[str, np.ndarray]:
    """Every signal on one layer; the layer's first rows are the training rows, the rest the vouched ones."""
    x, vouched = layer[: len(labels)], layer[len(labels):]
    return {
        "knn agreement": knn_agreement(x, labels),
        "contrast": contrast(x, labels),
        f"trusted doubt ({len(vouched_labels)} rows)": trusted_doubt(x, labels, vouched, vouched_labels),
    }


def mask_probe_auroc(layers: list[np.ndarray], mask: np.ndarray) -> float:
    """The best layer's cross-validated AUROC of a probe fitted on the poison mask itself."""
    def auroc(x: np.ndarray) -> float:
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        probe = LogisticRegression(max_iter=3000, C=0.1)
        return float(roc_auc_score(mask, cross_val_predict(probe, x, mask, cv=5, method="predict_proba")[:, 1]))
    return max(auroc(layer[: len(mask)]) for layer in layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="*", help=f"any of {', '.join(SETTINGS)} (default: all)")
    parser.add_argument("--trusted", type=int, default=150, help="vouched clean rows for `trusted doubt`")
    args = parser.parse_args()
    unknown = set(args.settings) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown setting {sorted(unknown)[0]!r}; choose from {', '.join(SETTINGS)}")
    print("| setting | signal | best layer | poisoned rows | " + " | ".join(f"top {int(f * 100)}%" for f in FRACTIONS)
          + " |")
    print("|---|---|---|---|" + "---|" * len(FRACTIONS))
    ceilings: dict[str, float] = {}
    for setting in args.settings or SETTINGS:
        config = load_config(CONFIGS / f"{setting}.yaml", [f"defense.trusted_size={args.trusted}"])
        data = prepare_data(config)
        train, vouched = data.poisoned.train, simulated_trusted_set(config, data.held_out_clean) or []
        texts, labels, mask = [e.text for e in train], np.array([e.label for e in train]), np.array(data.poisoned.mask)
        layers = layer_embeddings(texts + [e.text for e in vouched], config.model.max_length)
        found: dict[str, list[list[int]]] = {}
        for layer in layers:
            for name, suspicion in signal_scores(layer, labels, np.array([e.label for e in vouched])).items():
                found.setdefault(name, []).append(recall(suspicion, labels, mask, texts))
        for name, per_layer in found.items():
            best = max(range(len(per_layer)), key=lambda i: per_layer[i][1])  # the layer that does best at 10%
            print(f"| {setting} | {name} | {best} | {int(mask.sum())} | " + " | ".join(map(str, per_layer[best]))
                  + " |", flush=True)
        ceilings[setting] = mask_probe_auroc(layers, mask)
    print("\nCeiling: AUROC of a probe fitted on the poison mask itself (5-fold, best layer)\n")
    print("| setting | AUROC |\n|---|---|")
    for setting, auroc in ceilings.items():
        print(f"| {setting} | {auroc:.3f} |")


if __name__ == "__main__":
    main()
