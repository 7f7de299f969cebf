"""CUBE (Cui et al., NeurIPS 2022 Datasets and Benchmarks, arXiv 2206.08514): training-time filtering by clustering.

A reference model is fine-tuned on the rows as given, and every row's representation (the last layer where the
answer is read) is reduced with PCA to `cube_components` dimensions and clustered with HDBSCAN
(`cube_min_cluster_size`). Poisoned rows, which the reference classifies by their trigger rather than their content,
form clusters of their own. Within each label, rows in the label's largest cluster are kept and rows in its other
clusters are left out; rows HDBSCAN calls noise are kept. The model is then trained on the rest. (The paper reduces
with UMAP; PCA is what scikit-learn ships.)
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
from pydantic import Field
from sklearn.cluster import HDBSCAN
from sklearn.decomposition import PCA

from ..config import MethodSettings
from ..data.types import Example
from .base import Reference
from .filtering import ReferenceFilter

NOISE = -1


def cluster_rows(embeddings: np.ndarray, components: int, min_cluster_size: int) -> np.ndarray:
    """HDBSCAN cluster id per row (NOISE for none) on the PCA-reduced representations; deterministic."""
    dims = min(components, embeddings.shape[0], embeddings.shape[1])
    reduced = PCA(n_components=dims, random_state=0).fit_transform(embeddings)
    return HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(reduced)


def minority_cluster_rows(clusters: Sequence[int], labels: Sequence[int]) -> list[int]:
    """Rows in a cluster that is not the largest among the rows of their label (noise rows are kept)."""
    largest = {}
    for label in set(labels):
        sizes = Counter(c for c, y in zip(clusters, labels) if y == label and c != NOISE)
        largest[label] = min(sizes, key=lambda c: (-sizes[c], c)) if sizes else None
    return [i for i, (c, y) in enumerate(zip(clusters, labels)) if c != NOISE and c != largest[y]]


class CUBESettings(MethodSettings):
    cube_components: int = Field(10, ge=1, description="CUBE: PCA dimensions the representations are reduced to")
    cube_min_cluster_size: int = Field(20, ge=2, description="CUBE: HDBSCAN's smallest cluster")


class CUBE(ReferenceFilter):
    name = "cube"
    Settings = CUBESettings
    settings: CUBESettings

    def suspicious_rows(self, train: list[Example], reference: Reference) -> tuple[list[int], dict[str, object]]:
        cfg = self.settings
        clusters = cluster_rows(reference.embeddings([e.text for e in train]), cfg.cube_components,
                                cfg.cube_min_cluster_size)
        found = {"cube_clusters": int(len(set(clusters.tolist()) - {NOISE})),
                 "cube_noise_rows": int((clusters == NOISE).sum())}
        return minority_cluster_rows(clusters.tolist(), [e.label for e in train]), found
