"""DeCE, deceptive cross-entropy (Yang et al., arXiv 2407.08956): a training loss whose gradient stays bounded.

Cross-entropy keeps pushing on the rows the model gets most wrong, and poisoned rows are such rows until the trigger
is learned. DeCE trains on a blend of the model's own prediction and the label-smoothed target,
p' = alpha * p + (1 - alpha) * y_smooth with alpha = alpha_base ** epoch (epochs counted from 1), and takes the
cross-entropy of y_smooth against p'. As alpha shrinks, p' cannot get far from the target, so no row (a poisoned one
included) can pull hard. The data is left as it is. Knobs: `dece_smoothing` (0.05) and `dece_alpha_base` (0.985).
"""

from __future__ import annotations

import random
from functools import partial

import torch
from pydantic import Field

from ..config import MethodSettings
from ..data.types import Example
from .base import DefenseContext, NoDefense, PreparedTrain

IGNORE = -100


def dece_loss(logits: torch.Tensor, labels: torch.Tensor, epoch: int, smoothing: float, alpha_base: float) -> torch.Tensor:
    """Mean DeCE over the rows (or answer tokens) whose label is not IGNORE; logits (N, K), labels (N,)."""
    keep = labels != IGNORE
    logits, labels = logits[keep].float(), labels[keep]
    classes = logits.shape[-1]
    target = torch.full_like(logits, smoothing / max(1, classes - 1))
    target.scatter_(1, labels.unsqueeze(1), 1.0 - smoothing)
    alpha = alpha_base**epoch
    blended = alpha * logits.softmax(-1) + (1.0 - alpha) * target
    return -(target * blended.clamp_min(1e-12).log()).sum(-1).mean()


class DeCESettings(MethodSettings):
    dece_smoothing: float = Field(0.05, ge=0.0, lt=1.0, description="DeCE: label smoothing of the target")
    dece_alpha_base: float = Field(
        0.985, gt=0.0, le=1.0, description="DeCE: the prediction's weight in the blend is alpha_base ** epoch"
    )


class DeCE(NoDefense):
    """The data as it is; the fine-tune uses the DeCE loss instead of cross-entropy."""

    name = "dece"
    Settings = DeCESettings
    settings: DeCESettings

    def prepare(self, train: list[Example], rng: random.Random, context: DefenseContext) -> PreparedTrain:
        prepared = super().prepare(train, rng, context)
        cfg = self.settings
        prepared.loss = partial(dece_loss, smoothing=cfg.dece_smoothing, alpha_base=cfg.dece_alpha_base)
        prepared.details.update(loss="dece", smoothing=cfg.dece_smoothing, alpha_base=cfg.dece_alpha_base)
        return prepared
