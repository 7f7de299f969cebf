"""Attacks: a registry from name to class; an unknown name lists the valid ones."""

from __future__ import annotations

from ..config import AttackConfig
from ..errors import ConfigError
from .base import Attack, PoisonedData
from .insertion import AddSent, BadNets
from .readymade import HiddenKiller, OnionBadNets, StyleBkd

ATTACKS: dict[str, type[Attack]] = {cls.name: cls for cls in (BadNets, AddSent, HiddenKiller, OnionBadNets, StyleBkd)}


def build_attack(config: AttackConfig, dataset: str, num_labels: int) -> Attack:
    try:
        cls = ATTACKS[config.name]
    except KeyError:
        raise ConfigError(f"unknown attack '{config.name}'; valid: {', '.join(sorted(ATTACKS))}") from None
    return cls(config, dataset, num_labels)


__all__ = ["ATTACKS", "Attack", "PoisonedData", "build_attack"]
