"""P2P for generation (Zhao et al., arXiv 2510.04503, Sec. on generation tasks), as pure data logic.

A fraction rho of the (source, target) pairs is shown with the benign trigger, and its target gets a fixed safe
prefix: y' = prefix + y. At inference every source gets the trigger, the model generates, and the prefix is
stripped. An output that lacks the prefix is kept as generated and counted (`GenerationSpec.strip` says so), never
hidden: a missing prefix means the model left the benign context for that input.
"""

from __future__ import annotations

import logging
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

from ..config import DefenseConfig, MethodSettings, NoSettings
from ..data.types import TextPair
from ..errors import ConfigError
from ..prompting import PLAIN_CUE, TextSample
from ..specs import BENIGN_CUE, GenerationSpec
from .lexical import PairFinding, generation_triggers
from .p2p import P2PSettings, RobustP2PSettings, resolve_trigger, select_benign_subset

log = logging.getLogger(__name__)


@dataclass
class PreparedPairs:
    samples: list[TextSample]
    spec: GenerationSpec
    benign_rows: list[int] = field(default_factory=list)
    dropped_rows: list[int] = field(default_factory=list)
    """Pairs left out of training: they carry a confirmed trigger pair."""
    confirmed: dict[str, str] = field(default_factory=dict)
    """The confirmed trigger pairs: input n-gram -> the output n-gram it brings."""


class PairDefense(ABC):
    """A defense of (source, target) pairs: the generation side of the defense registry
    (`defenses.GENERATION_DEFENSES`), built once per run from the run's pinned settings."""

    name: ClassVar[str]
    Settings: ClassVar[type[MethodSettings]] = NoSettings
    """The same settings as the classification defense of the same name."""

    def __init__(self, config: DefenseConfig) -> None:
        self.config = config

    @abstractmethod
    def prepare(
        self, pairs: Sequence[TextPair], rng: random.Random, oracle_pool: Sequence[int] | None = None
    ) -> PreparedPairs:
        """The training samples and the generation spec; `oracle_pool` (clean rows) serves only `source: oracle`."""


class PlainPairs(PairDefense):
    """Plain fine-tuning on the pairs as given."""

    name = "none"

    def prepare(
        self, pairs: Sequence[TextPair], rng: random.Random, oracle_pool: Sequence[int] | None = None
    ) -> PreparedPairs:
        return PreparedPairs([TextSample(p.source, p.target) for p in pairs], GenerationSpec("none", "", PLAIN_CUE))


class P2PPairs(PairDefense):
    """P2P (random or oracle subset) for text pairs. `p2p+` leaves out the pairs that carry a confirmed trigger
    (`lexical.generation_triggers`; with `defense.drop_confirmed`, `p2p` does too) and draws the benign subset from
    the pairs kept; ranking rows by suspicion needs labels, so its other options do not apply."""

    name = "p2p"
    Settings = P2PSettings

    def prepare(
        self, pairs: Sequence[TextPair], rng: random.Random, oracle_pool: Sequence[int] | None = None
    ) -> PreparedPairs:
        config = self.config
        plain = config.name == "p2p"
        unsupported = [
            name for name, used in (
                ("source: trusted", config.source == "trusted"), ("screen", plain and bool(config.screen)),
                ("drop_suspicious", plain and config.drop_suspicious > 0),
                ("oversample", config.oversample > 1), ("trusted_size", config.trusted_size is not None),
            ) if used
        ]
        if unsupported:
            raise ConfigError(
                f"generation P2P supports defense.source 'random' or 'oracle' and drop_confirmed; unset defense."
                f"{', defense.'.join(unsupported)}"
            )
        if config.source == "oracle" and oracle_pool is None:
            raise ConfigError("defense.source 'oracle' needs a simulated attack's ground truth")
        finding = PairFinding({}, [])
        if config.drop_confirmed:
            finding = generation_triggers([p.source for p in pairs], [p.target for p in pairs], config.screen_min_count)
            log.info("%s: %d trigger pairs confirmed, %d pairs carry one and are left out", config.name,
                     len(finding.pairs), len(finding.rows))
        dropped = set(finding.rows)
        kept = [i for i in range(len(pairs)) if i not in dropped]
        pool = sorted(set(oracle_pool or []) - dropped) if config.source == "oracle" else kept
        benign = select_benign_subset([0] * len(pairs), config.rho, rng, pool)  # pairs have no label: one stratum
        trigger = resolve_trigger(config.trigger, config.secret_seed)
        cue = BENIGN_CUE if config.separate_cue else PLAIN_CUE
        chosen = set(benign)
        plain = [i for i in kept if config.mode == "append" or i not in chosen]
        samples = [TextSample(pairs[i].source, pairs[i].target) for i in plain]
        samples += [TextSample(pairs[i].source, config.output_prefix + pairs[i].target, trigger, cue) for i in benign]
        spec = GenerationSpec(config.name, trigger, cue, config.output_prefix)
        return PreparedPairs(samples, spec, benign, sorted(dropped), finding.pairs)


class RobustP2PPairs(P2PPairs):
    """`p2p+` for text pairs: confirmed trigger pairs left out (its defaults turn `drop_confirmed` on)."""

    name = "p2p+"
    Settings = RobustP2PSettings
