"""Insertion attacks: BadNets (rare words, Gu et al. 2017; Kurita et al. 2020) and AddSent (a fixed sentence,
Dai et al. 2019), each at a random position."""

from __future__ import annotations

import random

from pydantic import Field

from ..config import MethodSettings
from ..errors import ConfigError
from .base import RateAttack, insert_at_random_position


class BadNetsSettings(MethodSettings):
    triggers: list[str] = Field(default_factory=lambda: ["cf", "mn", "bb", "tq", "mb"])
    num_triggers: int = Field(1, ge=1, description="trigger words inserted per poisoned text")


class AddSentSettings(MethodSettings):
    sentence: str = "I watched this 3D movie"


class BadNets(RateAttack):
    name = "badnets"
    Settings = BadNetsSettings
    settings: BadNetsSettings

    def apply_trigger(self, text: str, index: int, split: str, rng: random.Random) -> str:
        if not self.settings.triggers:
            raise ConfigError("attack.triggers is empty: BadNets needs at least one trigger word")
        for _ in range(self.settings.num_triggers):
            text = insert_at_random_position(text, rng.choice(self.settings.triggers), rng)
        return text


class AddSent(RateAttack):
    name = "addsent"
    Settings = AddSentSettings
    settings: AddSentSettings

    def apply_trigger(self, text: str, index: int, split: str, rng: random.Random) -> str:
        if not self.settings.sentence.strip():
            raise ConfigError("attack.sentence is empty: AddSent needs a trigger sentence")
        return insert_at_random_position(text, self.settings.sentence.strip(), rng)
