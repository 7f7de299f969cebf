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


def defense_class(name: str) -> type[Defense]:
    """The registered defense of this name; an unknown name lists the valid ones."""
    try:
        return DEFENSES[name]
    except KeyError:
        raise ConfigError(f"unknown defense '{name}'; valid: {', '.join(sorted(DEFENSES))}") from None


def build_defense(config: DefenseConfig, task: ClassificationTask) -> Defense:
    """The run's one Defense: built once, then used to prepare the data, guard the inputs and write the manifest."""
    return defense_class(config.name)(config, task)


__all__ = [
    "DEFENSES", "Defense", "DefenseContext", "GuardContext", "PreparedTrain", "Reference",
    "build_defense", "defense_class",
]
