"""Defenses: a registry from name to class; an unknown name lists the valid ones."""

from __future__ import annotations

from ..config import DefenseConfig
from ..errors import ConfigError
from ..tasks import ClassificationTask
from .base import Defense, DefenseContext, GuardContext, NoDefense, PreparedTrain, Reference
from .bki import BKI
from .cube import CUBE
from .dece import DeCE
from .onion import Onion
from .p2p import P2P, RobustP2P
from .pdb import PDB
from .strip import Strip

DEFENSES: dict[str, type[Defense]] = {
    cls.name: cls for cls in (NoDefense, P2P, RobustP2P, PDB, DeCE, Onion, Strip, BKI, CUBE)
}


def build_defense(config: DefenseConfig, task: ClassificationTask) -> Defense:
    try:
        cls = DEFENSES[config.name]
    except KeyError:
        raise ConfigError(f"unknown defense '{config.name}'; valid: {', '.join(sorted(DEFENSES))}") from None
    return cls(config, task)


__all__ = [
    "DEFENSES", "Defense", "DefenseContext", "GuardContext", "PreparedTrain", "Reference",
    "build_defense",
]
