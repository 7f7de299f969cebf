"""Insertion attacks: BadNets (rare words, Gu et al. 2017; Kurita et al. 2020) and AddSent (a fixed sentence,
Dai et al. 2019), each at a random position."""

from __future__ import annotations

import random

from ..errors import ConfigError
from .base import RateAttack, insert_at_random_position


class BadNets(RateAttack):
    name = "badnets"

    def apply_trigger(self, text: str, index: int, split: str, rng: random.Random) -> str:
        if not self.config.triggers:
            raise ConfigError("attack.triggers is empty: BadNets needs at least one trigger word")
        for _ in range(self.config.num_triggers):
            text = insert_at_random_position(text, rng.choice(self.config.triggers), rng)
        return text


class AddSent(RateAttack):
    name = "addsent"

    def apply_trigger(self, text: str, index: int, split: str, rng: random.Random) -> str:
        if not self.config.sentence.strip():
            raise ConfigError("attack.sentence is empty: AddSent needs a trigger sentence")
        return insert_at_random_position(text, self.config.sentence.strip(), rng)
