from __future__ import annotations

import inspect
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poison2poison.config import DefenseConfig, ExperimentConfig, load_config
from poison2poison.data import Example
from poison2poison.defenses import DefenseContext, PreparedTrain, build_defense
from poison2poison.defenses.p2p import (
    OFFICIAL_TRIGGER,
    P2P,
    mod_projection,
    resolve_trigger,
    select_benign_subset,
)
from poison2poison.defenses.runner import apply_defense, trusted_rows
from poison2poison.errors import ConfigError
from poison2poison.specs import InferenceSpec
from poison2poison.tasks import SENTIMENT, TOPIC, generic_task

labels_strategy = st.lists(st.integers(0, 3), min_size=1, max_size=300)


@settings(max_examples=60, deadline=None)
@given(labels=labels_strategy, rho=st.floats(0.01, 1.0), seed=st.integers(0, 1000))
def test_subset_ratio_is_stratified_by_label(labels: list[int], rho: float, seed: int) -> None:
    subset = select_benign_subset(labels, rho, random.Random(seed))
    assert subset == sorted(set(subset))
    chosen = Counter(labels[i] for i in subset)
    for label, total in Counter(labels).items():
        assert chosen[label] == round(rho * total)


@settings(max_examples=40, deadline=None)
@given(labels=st.lists(st.integers(0, 1), min_size=20, max_size=200), seed=st.integers(0, 1000))
def test_oracle_pool_never_touches_a_poisoned_row(labels: list[int], seed: int) -> None:
    rng = random.Random(seed)
    poisoned = {i for i in range(len(labels)) if rng.random() < 0.1}
    pool = [i for i in range(len(labels)) if i not in poisoned]
    try:
        subset = select_benign_subset(labels, 0.2, random.Random(seed), pool)
    except ConfigError:
        return  # the clean pool of some label is too small: refused, never filled with poisoned rows
    assert not set(subset) & poisoned


@pytest.mark.parametrize("n", [2, 3, 4])
def test_label_map_and_projection(n: int) -> None:
    projection = mod_projection(n)
    assert len(projection) == 2 * n
    for y in range(n):
        assert projection[y] == y and projection[y + n] == y


def _train(size: int = 100) -> list[Example]:
    return [Example(f"text number {i}", i % 2) for i in range(size)]


def defended(config: ExperimentConfig, train: list[Example], **where: Any) -> PreparedTrain:
    """The run's one defense, built from the config, applied to `train` with the trusted rows the config names."""
    return apply_defense(config, build_defense(config.defense, SENTIMENT), train, trusted_rows(config, SENTIMENT), **where)


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_prepare_builds_benign_samples(mode: str) -> None:
    train = _train()
    prepared = P2P(DefenseConfig(name="p2p", rho=0.2, mode=mode), SENTIMENT).prepare(train, random.Random(0), DefenseContext())
    benign = [s for s in prepared.samples if s.trigger]
    assert len(benign) == 20
    assert all(s.trigger == OFFICIAL_TRIGGER and s.cue == "Answer:" and s.label in (2, 3) for s in benign)
    plain = [s for s in prepared.samples if not s.trigger]
    assert all(s.cue == "Output:" and s.label in (0, 1) for s in plain)
    assert len(prepared.samples) == (100 if mode == "replace" else 120)
    by_text = {e.text: e.label for e in train}
    assert all(by_text[s.text] + 2 == s.label for s in benign)
    assert prepared.spec.label_of_output == (0, 1, 0, 1) and prepared.spec.trigger == OFFICIAL_TRIGGER


def test_inference_spec_presents_trigger_and_cue_and_round_trips() -> None:
    spec = InferenceSpec("p2p", "T: ", "Answer:", mod_projection(4))
    sample = spec.present("hello")
    assert (sample.trigger, sample.text, sample.cue) == ("T: ", "hello", "Answer:")
    assert [spec.project(j) for j in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert InferenceSpec.from_json(spec.to_json()) == spec


def test_no_cue_option_uses_the_plain_cue() -> None:
    prepared = P2P(DefenseConfig(name="p2p", separate_cue=False), SENTIMENT).prepare(_train(), random.Random(0), DefenseContext())
    assert {s.cue for s in prepared.samples} == {"Output:"}


def test_secret_trigger_is_random_unless_pinned() -> None:
    assert resolve_trigger("secret", 3) == resolve_trigger("secret", 3) != OFFICIAL_TRIGGER
    assert resolve_trigger("secret") != resolve_trigger("secret")
    assert resolve_trigger("Custom: ") == "Custom: "
    with pytest.raises(ConfigError):
        resolve_trigger("  ")


def test_defenses_never_take_the_mask() -> None:
    for cls in (P2P,):
        assert "mask" not in inspect.signature(cls.prepare).parameters
    train = _train()
    config = load_config(None, ["defense.name=p2p", "defense.source=random"])
    a = defended(config, train, clean_rows=list(range(50)))
    b = defended(config, train, clean_rows=list(range(50, 100)))
    assert a.samples == b.samples


def test_oracle_uses_only_clean_rows_and_is_labelled() -> None:
    train = _train()
    config = load_config(None, ["defense.name=p2p", "defense.source=oracle"])
    clean = list(range(0, 100, 2)) + list(range(1, 100, 2))[:25]
    prepared = defended(config, train, clean_rows=clean)
    benign_texts = {s.text for s in prepared.samples if s.trigger}
    assert benign_texts <= {train[i].text for i in clean}
    assert prepared.details["oracle_experiment_only"] is True
    with pytest.raises(ConfigError, match="oracle"):
        defended(config, train, clean_rows=None)


def test_trusted_source_appends_the_vouched_rows(tmp_path) -> None:
    trusted = tmp_path / "trusted.jsonl"
    trusted.write_text('{"sentence": "vouched good", "label": 1}\n{"sentence": "vouched bad", "label": 0}\n')
    config = load_config(None, ["defense.name=p2p", "defense.source=trusted", f"defense.trusted_path={trusted}"])
    prepared = defended(config, _train())
    benign = [s for s in prepared.samples if s.trigger]
    assert len(prepared.samples) == 102 and {(s.text, s.label) for s in benign} == {("vouched good", 3), ("vouched bad", 2)}
    with pytest.raises(ConfigError, match="trusted"):
        defended(load_config(None, ["defense.name=p2p", "defense.source=trusted"]), _train())


def test_unknown_defense_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="valid: bki, cube, dece, none, onion, p2p, p2p\\+, pdb, strip"):
        build_defense(DefenseConfig(name="nope"), SENTIMENT)


def test_tasks_answer_words() -> None:
    assert TOPIC.answer_words(8)[4:] == list(TOPIC.benign_verbalizers)
    assert generic_task(3).answer_words(6) == ["0", "1", "2", "3", "4", "5"]
    with pytest.raises(ConfigError):
        SENTIMENT.answer_words(3)
