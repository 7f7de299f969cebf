"""Training-time filtering with a reference model (BKI, CUBE): fine-tune on the rows as given, find the rows that
look poisoned, leave them out, and train the real model on the rest."""

from __future__ import annotations

import random
from abc import abstractmethod

from ..data.types import Example
from ..errors import ConfigError
from ..prompting import Sample
from .base import DefenseContext, NoDefense, PreparedTrain, Reference


class ReferenceFilter(NoDefense):
    needs_reference = True

    @abstractmethod
    def suspicious_rows(self, train: list[Example], reference: Reference) -> tuple[list[int], dict[str, object]]:
        """(rows to leave out, what the filter found, for the manifest and the log)."""

    def prepare(self, train: list[Example], rng: random.Random, context: DefenseContext) -> PreparedTrain:
        if context.filtered is not None:
            dropped, found = context.filtered
        elif context.reference is None:
            raise ConfigError(f"defense '{self.name}' needs a reference model (DefenseContext.reference)")
        else:
            dropped, found = self.suspicious_rows(train, context.reference)
        prepared = super().prepare(train, rng, context)
        if len(dropped) >= len(train):
            raise ConfigError(f"defense '{self.name}' would leave out every training row; loosen its settings")
        drop = set(dropped)
        prepared.samples = [Sample(e.text, e.label) for i, e in enumerate(train) if i not in drop]
        prepared.dropped_rows = sorted(drop)
        prepared.filters = True
        prepared.details.update(found)
        return prepared
