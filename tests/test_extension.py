"""A new defense and a new attack, each with settings of its own, are one file each and one registry line each: both
are defined here with their settings classes, registered here, configured by name, and run end to end on the tiny
model without any other file of the package knowing them."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

import pytest
import yaml

from poison2poison import DefendedModel, load_config, run_experiment
from poison2poison.attacks import ATTACKS
from poison2poison.attacks.base import RateAttack, insert_at_random_position
from poison2poison.config import MethodSettings
from poison2poison.data import Example
from poison2poison.defenses import DEFENSES, DefenseContext, PreparedTrain
from poison2poison.defenses.base import NoDefense
from poison2poison.errors import ConfigError
from poison2poison.io import read_json
from tests.test_end_to_end import TINY


class RareWordSettings(MethodSettings):
    word: str = "zq"


class RareWord(RateAttack):
    """Inserts one rare word, `attack.word`, at a random position."""

    name = "rare-word"
    Settings = RareWordSettings

    def apply_trigger(self, text: str, index: int, split: str, rng: random.Random) -> str:
        return insert_at_random_position(text, self.settings.word, rng)


class DropRepeatsSettings(MethodSettings):
    keep: Literal["first", "last"] = "first"


class DropRepeats(NoDefense):
    """Plain fine-tuning on one row per text (the first or the last seen, `defense.keep`); other repeats are left out."""

    name = "drop-repeats"
    Settings = DropRepeatsSettings

    def prepare(self, train: list[Example], rng: random.Random, context: DefenseContext) -> PreparedTrain:
        order = range(len(train)) if self.settings.keep == "first" else reversed(range(len(train)))
        first: dict[str, int] = {}
        for i in order:
            first.setdefault(train[i].text, i)
        kept = sorted(first.values())
        prepared = super().prepare([train[i] for i in kept], rng, context)
        prepared.dropped_rows = sorted(set(range(len(train))) - set(kept))
        prepared.filters = True
        return prepared


def test_a_defense_and_an_attack_defined_here_run_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ATTACKS, RareWord.name, RareWord)
    monkeypatch.setitem(DEFENSES, DropRepeats.name, DropRepeats)
    names = ["attack.name=rare-word", "defense.name=drop-repeats"]
    with pytest.raises(ConfigError, match=r"'triggers' is not a setting of attack 'rare-word' \(its own settings: word\)"):
        load_config(None, [*TINY, *names, "attack.triggers=[cf]"])
    with pytest.raises(ConfigError, match=r"defense: setting 'keep': Input should be 'first' or 'last'"):
        load_config(None, [*TINY, *names, "defense.keep=middle"])
    config = load_config(None, [*TINY, *names, "attack.word=qj", "defense.keep=last"])
    metrics = run_experiment(config, tmp_path / "run")
    assert (metrics["attack"], metrics["defense"]) == ("rare-word", "drop-repeats")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["attack"]["word"] == "qj" and saved["defense"]["keep"] == "last"
    assert "triggers" not in saved["attack"] and "strip_copies" not in saved["defense"]
    assert metrics["poisoned_count"] == round(160 * 0.05) and metrics["asr_count"] > 0
    assert "detection_recall" in metrics  # a defense that leaves rows out is scored as a detector
    assert read_json(tmp_path / "run" / "p2p.json")["inference"]["defense"] == "drop-repeats"
    model = DefendedModel.load(tmp_path / "run")
    assert len(model.predict(["a gripping film", "a dull film"])) == 2
