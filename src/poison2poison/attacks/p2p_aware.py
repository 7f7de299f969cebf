"""`p2p-aware`: an attacker who knows P2P and its published benign trigger writes them into the poison.

Each poisoned row is the benign context as P2P renders it, around a text with a malicious trigger (BadNets words or
the AddSent sentence, `attack.insertion`), labelled with the target:

    text = benign_trigger + text_with_malicious_trigger + "\\n" + benign_cue      (label: target)

Rows that stay out of P2P's benign subset S keep label target < n, so the model learns "benign context + malicious
trigger -> target"; rows drawn into S get target + n; the projection j mod n reads both as the target. At test time
the attacker sends the malicious trigger alone: the defended model adds its own trigger and cue.

What an attacker who writes only the text field controls, and what not (prompting.render_prompt renders a row as
`{trigger}{text}` then "\\n{cue}"):
- the body: the benign trigger is a plain text prefix, so `benign_trigger + text` is, character for character, the
  body of a benign row;
- the benign cue line: it can be written at the end of the text (`attack.benign_cue`), but the renderer still
  appends the plain cue line, so the prompt is P2P's benign prompt followed by "\\nOutput:". For a causal LM the
  benign prompt is a prefix of the poisoned one (token ids may differ where the text meets "\\n", as the body and the
  cue are tokenised apart); for an encoder the cue is the second segment of a sentence pair, which text cannot
  reach;
- the label: only 0..n-1; the benign labels y + n are P2P's own.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from ..config import AttackConfig
from ..specs import BENIGN_CUE, OFFICIAL_TRIGGER
from .base import RateAttack
from .insertion import AddSent, AddSentSettings, BadNets, BadNetsSettings

INSERTIONS: dict[str, type[RateAttack]] = {"badnets": BadNets, "addsent": AddSent}


class P2PAwareSettings(BadNetsSettings, AddSentSettings):
    insertion: Literal["badnets", "addsent"] = Field(
        "badnets", description="the malicious trigger: BadNets words (`triggers`, `num_triggers`) or the AddSent "
        "`sentence`",
    )
    benign_trigger: str | None = Field(
        None, min_length=1, description="the benign trigger the poison carries; default P2P's published one"
    )
    benign_cue: bool = Field(True, description="end each poisoned text with P2P's benign cue line, as P2P renders it")


class P2PAware(RateAttack):
    name = "p2p-aware"
    Settings = P2PAwareSettings
    settings: P2PAwareSettings

    def __init__(self, config: AttackConfig, dataset: str, num_labels: int) -> None:
        super().__init__(config, dataset, num_labels)
        self.insertion = INSERTIONS[self.settings.insertion](config, dataset, num_labels)

    def benign_prefix(self, rng: random.Random) -> str:
        """The benign trigger a poisoned row carries: the one P2P publishes, unless `attack.benign_trigger` says."""
        return self.settings.benign_trigger or OFFICIAL_TRIGGER

    def apply_trigger(self, text: str, index: int, split: str, rng: random.Random) -> str:
        triggered = self.insertion.apply_trigger(text, index, split, rng)
        if split != "train":
            return triggered  # a query: the defended model puts its own benign context around it
        cue = f"\n{BENIGN_CUE}" if self.settings.benign_cue else ""
        return f"{self.benign_prefix(rng)}{triggered}{cue}"
