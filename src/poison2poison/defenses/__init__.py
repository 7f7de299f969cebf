"""Defenses: a registry from name to class; an unknown name lists the valid ones."""

from __future__ import annotations

from ..config import DefenseConfig, bind_registry
from ..errors import ConfigError
from ..tasks import ClassificationTask
from .base import Defense, DefenseContext, GuardContext, NoDefense, PreparedTrain, Reference
from .bki import BKI
from .cube import CUBE
from .dece import DeCE
from .generation import P2PPairs, PairDefense, PlainPairs, RobustP2PPairs
from .onion import Onion
from .p2p import P2P, RobustP2P
from .pdb import PDB
from .strip import Strip

DEFENSES: dict[str, type[Defense]] = {
    cls.name: cls for cls in (NoDefense, P2P, RobustP2P, PDB, DeCE, Onion, Strip, BKI, CUBE)
}
GENERATION_DEFENSES: dict[str, type[PairDefense]] = {cls.name: cls for cls in (PlainPairs, P2PPairs, RobustP2PPairs)}
"""The defenses of (source, target) pairs, by the same names as their classification twins."""
bind_registry("defense", DEFENSES)
bind_registry("defense", GENERATION_DEFENSES)


def defense_class(name: str) -> type[Defense]:
    """The registered defense of this name; an unknown name lists the valid ones."""
    try:
        return DEFENSES[name]
    except KeyError:
        raise ConfigError(f"unknown defense '{name}'; valid: {', '.join(sorted(DEFENSES))}") from None


def build_defense(config: DefenseConfig, task: ClassificationTask) -> Defense:
    """The run's one Defense: built once, then used to prepare the data, guard the inputs and write the manifest."""
    return defense_class(config.name)(config, task)


def build_generation_defense(config: DefenseConfig) -> PairDefense:
    """The run's one defense of text pairs; a defense with no generation form names the ones that have one."""
    try:
        return GENERATION_DEFENSES[config.name](config)
    except KeyError:
        names = [f"'{name}'" for name in GENERATION_DEFENSES]
        raise ConfigError(f"defense '{config.name}' is not available for generation tasks; use "
                          f"{', '.join(names[:-1])} or {names[-1]}") from None


__all__ = [
    "DEFENSES", "GENERATION_DEFENSES", "Defense", "DefenseContext", "GuardContext", "PairDefense", "PreparedTrain",
    "Reference", "build_defense", "build_generation_defense", "defense_class",
]
