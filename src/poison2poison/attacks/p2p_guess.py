"""`p2p-guess`: an attacker who knows P2P and how its secret triggers are drawn, but not the secret itself.

A secret trigger is words from a word list that ships with the package (secret.py), so the attacker knows its form
and its words. Each poisoned row gets its own guess, drawn the same way (`attack.guess_words` words, default the
length of a secret trigger), in the benign layout of `p2p-aware`, around a malicious trigger, with the target label.
If a model learned "any benign-looking prefix + malicious trigger -> target", the backdoor would fire through the
secret context too; a secret closes the hole only if it does not. Against the published trigger it measures how
far the poison generalises from prefixes of the same form to the one the model is queried with.
"""

from __future__ import annotations

import random

from pydantic import Field

from ..secret import draw_secret_trigger
from .p2p_aware import P2PAware, P2PAwareSettings


class P2PGuessSettings(P2PAwareSettings):
    guess_words: int | None = Field(
        None, ge=1, description="words in each guessed trigger; default the length of a secret trigger"
    )


class P2PGuess(P2PAware):
    name = "p2p-guess"
    Settings = P2PGuessSettings
    settings: P2PGuessSettings

    def benign_prefix(self, rng: random.Random) -> str:
        """A fresh guess per row, drawn as a secret trigger is (from the attack's own random stream)."""
        return draw_secret_trigger(rng, self.settings.guess_words)
