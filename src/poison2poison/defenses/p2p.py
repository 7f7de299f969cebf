"""Poison-to-Poison (Zhao et al., arXiv 2510.04503): the core, as pure data logic (no torch).

A subset S of the training set (fraction rho, stratified by label) is shown with a benign trigger and, for n
classes, the label y + n; the model learns the benign context as a second, clean task. At inference every input
gets the trigger (and the benign cue) and output j is read as label j mod n, so a malicious trigger learned in the
ordinary context does not fire.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import defaultdict
from typing import Any, ClassVar, Sequence

from ..config import MethodSettings
from ..data.types import Example
from ..errors import ConfigError
from ..prompting import PLAIN_CUE, Sample
from ..secret import draw_secret_trigger
from ..specs import BENIGN_CUE, OFFICIAL_TRIGGER, InferenceSpec
from .base import Defense, DefenseContext, PreparedTrain
from .lexical import confirmed_triggers

log = logging.getLogger(__name__)

def select_benign_subset(
    labels: Sequence[int], rho: float, rng: random.Random, pool: Sequence[int] | None = None
) -> list[int]:
    """Indices of the benign subset: round(rho * count) rows of each label, drawn from `pool` (default: all rows)."""
    by_label: dict[int, list[int]] = defaultdict(list)
    for i in range(len(labels)) if pool is None else sorted(pool):
        by_label[labels[i]].append(i)
    totals: dict[int, int] = defaultdict(int)
    for label in labels:
        totals[label] += 1
    chosen: list[int] = []
    for label in sorted(totals):
        want = benign_count(totals[label], rho)
        available = by_label.get(label, [])
        if want > len(available):
            raise ConfigError(f"benign subset needs {want} rows of label {label}, the pool has {len(available)}")
        chosen.extend(rng.sample(available, want))
    return sorted(chosen)


def resolve_trigger(setting: str, secret_seed: int | None = None) -> str:
    """'official' -> the paper's (published) trigger; 'secret' -> random common words, at least 128 bits
    (secret.py); anything else is the trigger text itself.

    A secret trigger comes from the OS's randomness unless `secret_seed` pins it, for reproducible experiments: then
    the seed, which config.yaml shows, gives the trigger back. Either way the trigger is stored in the manifest,
    which therefore must be kept private.
    """
    if setting == "official":
        return OFFICIAL_TRIGGER
    if setting == "secret":
        return draw_secret_trigger(random.Random(secret_seed) if secret_seed is not None else None)
    if not setting.strip():
        raise ConfigError("defense.trigger is empty; use 'official', 'secret' or a non-empty text")
    return setting


def extended_label(label: int, num_labels: int) -> int:
    return label + num_labels


def mod_projection(num_labels: int) -> tuple[int, ...]:
    """Output j of the doubled label space stands for label j mod n."""
    return tuple(j % num_labels for j in range(2 * num_labels))


def benign_count(rows: int, rho: float) -> int:
    """How many of a label's rows the benign subset takes."""
    return round(rho * rows)


def tie_order(texts: Sequence[str]) -> list[str]:
    """Per row, a hash of its text: equal suspicion is ordered by it, so that the order of the rows in the data file
    (a published poisoned set may list its poisoned rows first) cannot decide which tied rows are taken."""
    return [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]


def most_suspicious(suspicion: Sequence[float], fraction: float, texts: Sequence[str]) -> list[int]:
    """Sorted indices of the round(fraction * count) most suspicious rows (ties ordered by `tie_order`)."""
    count = round(fraction * len(suspicion))
    ties = tie_order(texts)
    order = sorted(range(len(suspicion)), key=lambda i: (-suspicion[i], ties[i], i))
    return sorted(order[:count])


def least_suspicious_pool(
    labels: Sequence[int], suspicion: Sequence[float], fraction: float, candidates: Sequence[int],
    texts: Sequence[str],
) -> list[int]:
    """Sorted indices of the least suspicious `fraction` of each label's candidate rows (at least one per label;
    ties ordered by `tie_order`)."""
    ties = tie_order(texts)
    by_label: dict[int, list[int]] = defaultdict(list)
    for i in candidates:
        by_label[labels[i]].append(i)
    pool: list[int] = []
    for rows in by_label.values():
        rows.sort(key=lambda i: (suspicion[i], ties[i], i))
        pool.extend(rows[: max(1, round(fraction * len(rows)))])
    return sorted(pool)


class P2PSettings(MethodSettings):
    """P2P's settings are the defense section's shared subset fields (rho, source, trigger, screening, ...)."""

    benign_subset = True


class RobustP2PSettings(P2PSettings):
    section_defaults: ClassVar[dict[str, Any]] = {
        "screen": ["lexical", "reference"], "screen_pool": 1.0, "drop_suspicious": 0.1, "drop_confirmed": True,
        "benign_head": "plain",
    }
    """What `p2p+` changes from paper P2P unless the config sets it; chosen in docs/robust.md."""


class P2P(Defense):
    """Paper P2P, plus our robust options (screened benign subset, dropping suspicious rows and rows with a confirmed
    trigger, oversampling).

    With the default settings it is the paper's method, row for row.
    """

    name = "p2p"
    Settings = P2PSettings

    def prepare(self, train: list[Example], rng: random.Random, context: DefenseContext) -> PreparedTrain:
        cfg, n = self.config, self.task.num_labels
        trigger = resolve_trigger(cfg.trigger, cfg.secret_seed)
        cue = BENIGN_CUE if cfg.separate_cue else PLAIN_CUE
        dropped, triggers, because = self._dropped_rows(train, context)
        dropped_set = set(dropped)
        kept = [i for i in range(len(train)) if i not in dropped_set]
        benign_rows, subset = self._benign_rows(train, kept, rng, context)

        def benign(example: Example) -> list[Sample]:
            return [Sample(example.text, self.benign_label(example.label), trigger, cue)] * cfg.oversample

        if cfg.source == "trusted" or cfg.mode == "append":
            samples = [Sample(train[i].text, train[i].label) for i in kept]
            samples += [s for e in benign_rows for s in benign(e)]
        else:
            chosen = set(subset)
            samples = [
                s for i in kept for s in (benign(train[i]) if i in chosen else [Sample(train[i].text, train[i].label)])
            ]
        log.info("%s: %d benign rows x%d (source %s%s, mode %s, screened %s), %d rows dropped, %s trigger",
                 self.name, len(benign_rows), cfg.oversample, cfg.source, ", EXPERIMENT ONLY" if cfg.source == "oracle" else "",
                 cfg.mode, "+".join(cfg.screen) or "no", len(dropped),
                 "the published" if trigger == OFFICIAL_TRIGGER else "a private")
        spec = InferenceSpec(self.name, trigger, cue, self.label_of_output())
        details = {
            "source": cfg.source,
            "oracle_experiment_only": cfg.source == "oracle",
            "rho": cfg.rho,
            "mode": "append" if cfg.source == "trusted" else cfg.mode,
            "benign_count": len(benign_rows),
            "benign_label_counts": {str(k): sum(1 for e in benign_rows if e.label == k) for k in range(n)},
            "oversample": cfg.oversample,
            "screen": list(cfg.screen),
            "dropped_count": len(dropped),
            "confirmed_triggers": triggers,
        }
        return PreparedTrain(samples, spec, details, benign_rows=subset, dropped_rows=dropped, dropped_because=because,
                             filters=cfg.drop_suspicious > 0 or cfg.drop_confirmed)

    def benign_label(self, label: int) -> int:
        """The label a benign (triggered) row is trained with: y + n, a class of its own."""
        return extended_label(label, self.task.num_labels)

    def label_of_output(self) -> tuple[int, ...]:
        """What each model output means at inference (with the trigger applied): j mod n."""
        return mod_projection(self.task.num_labels)

    def _dropped_rows(
        self, train: list[Example], context: DefenseContext
    ) -> tuple[list[int], dict[str, int], dict[int, str]]:
        """(rows left out of training, the confirmed trigger n-grams behind some of them, and for each row that
        carries one, which)."""
        cfg, texts = self.config, [e.text for e in train]
        dropped = set(most_suspicious(self._suspicion(train, context), cfg.drop_suspicious, texts)
                      if cfg.drop_suspicious else [])
        triggers: dict[str, int] = {}
        because: dict[int, str] = {}
        if cfg.drop_confirmed:
            finding = confirmed_triggers(texts, [e.label for e in train], cfg.screen_min_count)
            triggers = finding.triggers
            dropped.update(finding.rows)
            because = {row: "carries the confirmed trigger " + ", ".join(f"'{g}'" for g in grams)
                       for row, grams in finding.triggers_by_row.items()}
            log.info("%s: %d trigger n-grams confirmed (%s), %d rows carry one", self.name, len(triggers),
                     ", ".join(sorted(triggers)) or "none", len(finding.rows))
        return sorted(dropped), triggers, because

    def _suspicion(self, train: list[Example], context: DefenseContext) -> list[float]:
        if context.suspicion is None:
            raise ConfigError("defense.drop_suspicious and a screened benign subset need defense.screen signals")
        if len(context.suspicion) != len(train):
            raise ConfigError(f"screening scored {len(context.suspicion)} rows, the training set has {len(train)}")
        return context.suspicion

    def _benign_rows(
        self, train: list[Example], kept: list[int], rng: random.Random, context: DefenseContext
    ) -> tuple[list[Example], list[int]]:
        cfg = self.config
        if cfg.source == "trusted":
            if not context.trusted:
                raise ConfigError("defense.source is 'trusted' but no trusted data was given (defense.trusted_path)")
            return list(context.trusted), []
        labels = [e.label for e in train]
        if cfg.source == "oracle":
            if context.oracle_pool is None:
                raise ConfigError("defense.source 'oracle' needs the attack's clean rows; it exists for experiments only")
            pool: list[int] | None = sorted(set(context.oracle_pool) & set(kept))
        elif cfg.screen:
            pool = least_suspicious_pool(labels, self._suspicion(train, context), cfg.screen_pool, kept,
                                         [e.text for e in train])
        else:
            pool = None if len(kept) == len(train) else kept
        subset = select_benign_subset(labels, cfg.rho, rng, pool)
        return [train[i] for i in subset], subset


class RobustP2P(P2P):
    """`p2p+`: P2P with the robust options on by default (`RobustP2PSettings`); ours, not the paper's."""

    name = "p2p+"
    Settings = RobustP2PSettings
