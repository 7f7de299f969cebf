"""PDB, the proactive defensive backdoor (Wei, Zha and Wu, NeurIPS 2024, arXiv 2405.16112): P2P's parent.

A reserved set (ideally trusted) is shown with a defensive trigger and the shifted label h(y) = (y + 1) mod n, several
times over, beside the plain training rows. At inference the trigger is always applied and the shift undone,
h^-1(j) = (j - 1) mod n. Unlike P2P the label space does not grow: the defensive backdoor shares the task's outputs.
Knobs (`PDBSettings`): `rho` 0.1, `oversample` 5, `mode` append, no cue of its own; `source` random (the
untrusted data, as P2P) or `trusted` (PDB's own assumption, with `trusted_path` or, in experiments, `trusted_size`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from .p2p import P2P, P2PSettings


def shifted_label(label: int, num_labels: int) -> int:
    return (label + 1) % num_labels


def unshift_projection(num_labels: int) -> tuple[int, ...]:
    """Output j, read with the defensive trigger applied, stands for label (j - 1) mod n."""
    return tuple((j - 1) % num_labels for j in range(num_labels))


class PDBSettings(P2PSettings):
    section_defaults: ClassVar[dict[str, Any]] = {"rho": 0.1, "oversample": 5, "mode": "append", "separate_cue": False}
    """PDB's own defaults: a tenth of the data, shown five times, added beside the plain rows, no cue of its own."""


class PDB(P2P):
    name = "pdb"
    Settings = PDBSettings

    def benign_label(self, label: int) -> int:
        return shifted_label(label, self.task.num_labels)

    def label_of_output(self) -> tuple[int, ...]:
        return unshift_projection(self.task.num_labels)
