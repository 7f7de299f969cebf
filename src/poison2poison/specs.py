"""What a defense hands to the model stages: how a query is shown to the trained model and how its output is read
back (`InferenceSpec` for labels, `GenerationSpec` for text), and the loss that may replace cross-entropy.

They sit below training and inference, which use them, so that neither imports the defenses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

from .prompting import PLAIN_CUE, Sample, TextSample

OFFICIAL_TRIGGER = "The query currently entered is: "
"""P2P's published benign trigger: what `p2p run` reproduces the paper with; a model made for use gets a secret one."""
BENIGN_CUE = "Answer:"
"""The answer cue of the benign context (the official code's); plain queries end with `prompting.PLAIN_CUE`."""

TrainLoss = Callable[..., Any]
"""A training loss in place of cross-entropy: (logits (N, K), labels (N,), epoch from 1) -> scalar tensor."""


@dataclass(frozen=True)
class InferenceSpec:
    """How a query is shown to the trained model and how its output is mapped back to a label.

    Saved in the run's manifest (p2p.json) so that every predict path applies it: a P2P model queried without
    its trigger still fires the attacker's backdoor.
    """

    defense: str
    trigger: str
    cue: str
    label_of_output: tuple[int, ...]
    """label_of_output[j] is the original label that model output j stands for (P2P: j mod n)."""

    @property
    def num_outputs(self) -> int:
        return len(self.label_of_output)

    def present(self, text: str) -> Sample:
        return Sample(text=text, label=-1, trigger=self.trigger, cue=self.cue)

    def project(self, output: int) -> int:
        return self.label_of_output[output]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["label_of_output"] = list(self.label_of_output)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "InferenceSpec":
        return cls(data["defense"], data["trigger"], data["cue"], tuple(int(j) for j in data["label_of_output"]))


def plain_spec(defense: str, num_labels: int) -> InferenceSpec:
    """Queries as they are, outputs as labels."""
    return InferenceSpec(defense, "", PLAIN_CUE, tuple(range(num_labels)))


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
