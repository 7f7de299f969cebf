"""A new defense and a new attack are one class each and one registry line each: both are defined here, registered
here, and run end to end on the tiny model without any other file of the package knowing them."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from poison2poison import DefendedModel, load_config, run_experiment
from poison2poison.attacks import ATTACKS
from poison2poison.attacks.base import RateAttack, insert_at_random_position
from poison2poison.data import Example
from poison2poison.defenses import DEFENSES, DefenseContext, PreparedTrain
from poison2poison.defenses.base import NoDefense
from poison2poison.io import read_json
from tests.test_end_to_end import TINY


class RareSuffix(RateAttack):
    """Inserts one rare word, the first of `attack.triggers`, at a random position."""

    name = "rare-suffix"

    def apply_trigger(self, text: str, index: int, split: str, rng: random.Random) -> str:
        return insert_at_random_position(text, self.config.triggers[0], rng)


class DropRepeats(NoDefense):
    """Plain fine-tuning on the rows whose text is seen for the first time; later repeats are left out."""

    name = "drop-repeats"

    def prepare(self, train: list[Example], rng: random.Random, context: DefenseContext) -> PreparedTrain:
        first: dict[str, int] = {}
        for i, e in enumerate(train):
            first.setdefault(e.text, i)
        kept = sorted(first.values())
        prepared = super().prepare([train[i] for i in kept], rng, context)
        prepared.dropped_rows = sorted(set(range(len(train))) - set(kept))
        prepared.filters = True
        return prepared


def test_a_defense_and_an_attack_defined_here_run_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ATTACKS, RareSuffix.name, RareSuffix)
    monkeypatch.setitem(DEFENSES, DropRepeats.name, DropRepeats)
    config = load_config(None, [*TINY, "attack.name=rare-suffix", "defense.name=drop-repeats"])
    metrics = run_experiment(config, tmp_path / "run")
    assert (metrics["attack"], metrics["defense"]) == ("rare-suffix", "drop-repeats")
    assert metrics["poisoned_count"] == round(160 * 0.05) and metrics["asr_count"] > 0
    assert "detection_recall" in metrics  # a defense that leaves rows out is scored as a detector
    assert read_json(tmp_path / "run" / "p2p.json")["inference"]["defense"] == "drop-repeats"
    model = DefendedModel.load(tmp_path / "run")
    assert len(model.predict(["a gripping film", "a dull film"])) == 2
