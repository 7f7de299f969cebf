"""Poisoned sets written by the attacks' own authors, loaded as attacks.

- HiddenKiller (Qi et al. 2021, syntactic paraphrase) and ONION's BadNets set: train rows are taken as given;
  their poisoned test rows are the ASR set. The ground-truth mask marks the train rows that are not rows of the
  clean SST-2 training split. Their poison rate is the authors'; attack.rate only switches between the file
  (any rate > 0) and the clean training split (rate 0, the clean floor measured on the same ASR set).
- StyleBkd (Qi et al. 2021, Bible style): the whole split rewritten in style, row-aligned with SST-2, original
  labels. Poison is built at `rate` by swapping in the styled text of non-target rows and relabelling them.
"""

from __future__ import annotations

import logging
import random
from functools import cached_property

from ..data.catalog import load_split
from ..data.types import Example
from ..errors import ConfigError
from .base import Attack, PoisonedData, RateAttack

log = logging.getLogger(__name__)

SST2_ONLY = "sst2"


def _require_sst2(name: str, dataset: str) -> None:
    if dataset != SST2_ONLY:
        raise ConfigError(f"attack '{name}' is a ready-made SST-2 set; set data.dataset to 'sst2' (got '{dataset}')")


class ReadyMadeAttack(Attack):
    folder: str

    def poison(self, train: list[Example], test: list[Example], rng: random.Random) -> PoisonedData:
        _require_sst2(self.name, self.dataset)
        asr_test = self._asr_test()
        if self.config.rate == 0:
            log.info("%s: attack.rate is 0, so the clean training rows are used (the clean floor)", self.name)
            return PoisonedData(list(train), [False] * len(train), asr_test)
        given = load_split(self.folder, "train")
        clean_texts = {e.text for e in train}
        mask = [e.text not in clean_texts for e in given]
        log.info("%s: %d of %d train rows are poisoned (rate %.3f, as written by the authors)",
                 self.name, sum(mask), len(given), sum(mask) / max(len(given), 1))
        targets = {e.label for e, m in zip(given, mask) if m}
        if targets and targets != {self.config.target}:
            raise ConfigError(f"attack '{self.name}' poisons toward label(s) {sorted(targets)}; set attack.target to match")
        return PoisonedData(given, mask, asr_test)


    def _asr_test(self) -> list[Example]:
        """The authors' test rows carry the target label; their true label is the one non-target label."""
        others = [label for label in range(self.num_labels) if label != self.config.target]
        if len(others) != 1:
            raise ConfigError(f"attack '{self.name}' needs a binary task to know its test rows' true labels")
        return [Example(e.text, others[0]) for e in load_split(self.folder, "test")]


class HiddenKiller(ReadyMadeAttack):
    name = "hiddenkiller"
    folder = "hiddenkiller-sst2"


class OnionBadNets(ReadyMadeAttack):
    name = "onion-badnets"
    folder = "onion-badnets-sst2"


class StyleBkd(RateAttack):
    name = "stylebkd"
    folder = "stylebkd-bible-sst2"

    @cached_property
    def styled(self) -> dict[str, list[Example]]:
        _require_sst2(self.name, self.dataset)
        return {split: load_split(self.folder, split) for split in ("train", "test")}

    def eligible(self, index: int, split: str) -> bool:
        return bool(self.styled[split][index].text)

    def apply_trigger(self, text: str, index: int, split: str, rng: random.Random) -> str:
        return self.styled[split][index].text

    def poison(self, train: list[Example], test: list[Example], rng: random.Random) -> PoisonedData:
        for split, rows in (("train", train), ("test", test)):
            if len(self.styled[split]) != len(rows):
                raise ConfigError(
                    f"attack 'stylebkd': the styled {split} split has {len(self.styled[split])} rows but the clean "
                    f"one has {len(rows)}; they must be row-aligned (use the full SST-2 split)"
                )
        return super().poison(train, test, rng)
