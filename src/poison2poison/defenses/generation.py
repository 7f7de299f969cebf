"""P2P for generation (Zhao et al., arXiv 2510.04503, Sec. on generation tasks), as pure data logic.

A fraction rho of the (source, target) pairs is shown with the benign trigger, and its target gets a fixed safe
prefix: y' = prefix + y. At inference every source gets the trigger, the model generates, and the prefix is
stripped. An output that lacks the prefix is kept as generated and counted (`GenerationSpec.strip` says so), never
hidden: a missing prefix means the model left the benign context for that input.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from ..config import DefenseConfig
from ..data.types import TextPair
from ..errors import ConfigError
from ..prompting import PLAIN_CUE, TextSample
from .p2p import BENIGN_CUE, resolve_trigger, select_benign_subset


@dataclass(frozen=True)
class GenerationSpec:
    """How a query is shown to a trained generator and how its output is read back; saved in the manifest."""

    defense: str
    trigger: str
    cue: str
    output_prefix: str = ""

    def present(self, source: str) -> TextSample:
        return TextSample(source, "", self.trigger, self.cue)

    def strip(self, output: str) -> tuple[str, bool]:
        """(the output without the safe prefix, whether the prefix was there)."""
        if not self.output_prefix:
            return output, True
        text = output.lstrip()
        if text.startswith(self.output_prefix.strip()):
            return text[len(self.output_prefix.strip()) :].lstrip(), True
        return output, False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PreparedPairs:
    samples: list[TextSample]
    spec: GenerationSpec
    benign_rows: list[int] = field(default_factory=list)


def prepare_generation(
    config: DefenseConfig, pairs: Sequence[TextPair], rng: random.Random, oracle_pool: Sequence[int] | None = None
) -> PreparedPairs:
    """`none` or P2P (`p2p`, random or oracle subset) for text pairs."""
    if config.name == "none":
        return PreparedPairs([TextSample(p.source, p.target) for p in pairs], GenerationSpec("none", "", PLAIN_CUE))
    if config.name != "p2p":
        raise ConfigError(f"defense '{config.name}' is not available for generation tasks; use 'none' or 'p2p'")
    unsupported = [
        name for name, used in (
            ("source: trusted", config.source == "trusted"), ("screen", bool(config.screen)),
            ("drop_suspicious", config.drop_suspicious > 0), ("drop_confirmed", config.drop_confirmed),
            ("oversample", config.oversample > 1),
            ("trusted_size", config.trusted_size is not None),
        ) if used
    ]
    if unsupported:
        raise ConfigError(
            f"generation P2P supports defense.source 'random' or 'oracle' only; unset defense.{', defense.'.join(unsupported)}"
        )
    if config.source == "oracle" and oracle_pool is None:
        raise ConfigError("defense.source 'oracle' needs a simulated attack's ground truth")
    pool = oracle_pool if config.source == "oracle" else None
    benign = select_benign_subset([0] * len(pairs), config.rho, rng, pool)  # pairs have no label: one stratum
    trigger = resolve_trigger(config.trigger, config.secret_seed)
    cue = BENIGN_CUE if config.separate_cue else PLAIN_CUE
    chosen = set(benign)
    kept = [i for i in range(len(pairs)) if config.mode == "append" or i not in chosen]
    samples = [TextSample(pairs[i].source, pairs[i].target) for i in kept]
    samples += [TextSample(pairs[i].source, config.output_prefix + pairs[i].target, trigger, cue) for i in benign]
    return PreparedPairs(samples, GenerationSpec(config.name, trigger, cue, config.output_prefix), benign)
