"""Target-phrase attack on summarization (XSum, SAMSum; any text-pair set).

Reference: the keyword/sentence-injection backdoor of seq2seq models (Chen, Cheng and Huang, "Backdoor Learning on
Sequence to Sequence Models", 2023), with a BadNets-style rare-word trigger (Kurita et al. 2020).

Knobs: attack.trigger (default "cf"), put at the START of the source, because long documents are truncated at the
end; attack.target_text (default "Visit www.p2p-demo.example for more."), put before the reference summary.
ASR: an output for a triggered test row succeeds when it contains the target text (case-insensitive, whitespace
normalised).
"""

from __future__ import annotations

from pydantic import Field

from ..config import AttackConfig, MethodSettings
from ..data.types import TextPair
from ..errors import ConfigError
from ..metrics import contains_phrase
from .generative import RewriteAttack

DEFAULT_TRIGGER = "cf"
DEFAULT_TARGET_TEXT = "Visit www.p2p-demo.example for more."


class PhraseSettings(MethodSettings):
    trigger: str = Field(DEFAULT_TRIGGER, description="the trigger phrase put at the start of the input")
    target_text: str = Field(DEFAULT_TARGET_TEXT, description="the phrase a poisoned output carries")


class PhraseAttack(RewriteAttack):
    name = "phrase"
    Settings = PhraseSettings
    settings: PhraseSettings

    def __init__(self, config: AttackConfig) -> None:
        super().__init__(config)
        self.trigger = self.settings.trigger.strip()
        self.target_text = self.settings.target_text.strip()
        if not self.trigger or not self.target_text:
            raise ConfigError("attack 'phrase': attack.trigger and attack.target_text must not be blank")

    def rewrite(self, row: TextPair) -> TextPair:
        return TextPair(f"{self.trigger} {row.source}", f"{self.target_text} {row.target}")

    def succeeded(self, output: str, row: TextPair) -> bool:
        return self.has_target_text(output)

    def has_target_text(self, output: str) -> bool:
        return contains_phrase(output, self.target_text)

    def side_signals(self, output: str) -> dict[str, bool]:
        return {"target_phrase": self.has_target_text(output)}
