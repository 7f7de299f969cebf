from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poison2poison.attacks import ATTACKS, build_attack
from poison2poison.config import AttackConfig
from poison2poison.data import Example, load_split
from poison2poison.errors import ConfigError

WORDS = ["good", "bad", "film", "plot", "actor", "scene", "dull", "fun"]


@st.composite
def datasets(draw: st.DrawFn) -> tuple[list[Example], int]:
    n = draw(st.integers(2, 4))
    size = draw(st.integers(n * 5, 120))
    rows = [
        Example(" ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8))), i % n) for i in range(size)
    ]
    return rows, n


@settings(max_examples=40, deadline=None)
@given(data=datasets(), rate=st.floats(0.0, 0.3), seed=st.integers(0, 2**16), name=st.sampled_from(["badnets", "addsent"]),
       mode=st.sampled_from(["dirty", "clean"]))
def test_rate_target_mask_and_test_set(data: tuple[list[Example], int], rate: float, seed: int, name: str, mode: str) -> None:
    rows, n = data
    target = seed % n
    attack = build_attack(AttackConfig(name=name, rate=rate, target=target, label_mode=mode), "synthetic", n)
    candidates = sum((e.label == target) == (mode == "clean") for e in rows)
    if round(rate * len(rows)) > candidates:
        with pytest.raises(ConfigError, match="candidates"):
            attack.poison(rows, rows, random.Random(seed))
        return
    out = attack.poison(rows, rows, random.Random(seed))
    assert out.poisoned_count == round(rate * len(rows))
    assert len(out.train) == len(out.mask) == len(rows)
    for before, after, poisoned in zip(rows, out.train, out.mask):
        if poisoned:
            assert after.label == target
            assert (before.label == target) == (mode == "clean")
            assert len(after.text.split()) > len(before.text.split())
        else:
            assert after == before
    assert len(out.asr_test) == sum(e.label != target for e in rows)
    assert all(e.label != target for e in out.asr_test)


def test_determinism_by_seed() -> None:
    rows = [Example(f"row {i} is a fine sentence", i % 2) for i in range(200)]
    attack = build_attack(AttackConfig(name="badnets", rate=0.1), "synthetic", 2)
    first, again = attack.poison(rows, rows, random.Random(7)), attack.poison(rows, rows, random.Random(7))
    other = attack.poison(rows, rows, random.Random(8))
    assert (first.train, first.mask, first.asr_test) == (again.train, again.mask, again.asr_test)
    assert first.mask != other.mask


def test_badnets_inserts_configured_words_and_keeps_the_rest() -> None:
    rows = [Example("one two three four five", 0)] * 20
    config = AttackConfig(name="badnets", rate=0.5, triggers=["zq", "xv"], num_triggers=3)
    out = build_attack(config, "synthetic", 2).poison(rows, rows, random.Random(0))
    for e, m in zip(out.train, out.mask):
        if m:
            words = e.text.split()
            assert sum(w in {"zq", "xv"} for w in words) == 3
            assert [w for w in words if w not in {"zq", "xv"}] == "one two three four five".split()


def test_addsent_inserts_the_sentence_whole() -> None:
    rows = [Example("alpha beta gamma", 0)] * 10
    out = build_attack(AttackConfig(name="addsent", rate=0.5, sentence="I watched this 3D movie"), "s", 2).poison(
        rows, rows, random.Random(1)
    )
    assert all("I watched this 3D movie" in e.text for e in out.asr_test)
    assert all(e.text.replace("I watched this 3D movie", " ").split() == ["alpha", "beta", "gamma"] for e in out.asr_test)


def test_unknown_attack_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="valid: addsent, badnets"):
        build_attack(AttackConfig(name="nope"), "sst2", 2)


@pytest.mark.parametrize(("name", "poisoned"), [("hiddenkiller", 1383), ("onion-badnets", 69)])
def test_ready_made_sets_load_as_attacks(data_dir: Path, name: str, poisoned: int) -> None:
    train, test = load_split("sst2", "train"), load_split("sst2", "test")
    out = build_attack(AttackConfig(name=name, target=1), "sst2", 2).poison(train, test, random.Random(0))
    assert out.poisoned_count == poisoned
    assert all(e.label == 1 for e, m in zip(out.train, out.mask) if m)
    assert len(out.asr_test) == 912 and {e.label for e in out.asr_test} == {0}
    clean = build_attack(AttackConfig(name=name, rate=0.0), "sst2", 2).poison(train, test, random.Random(0))
    assert clean.poisoned_count == 0 and clean.train == train and len(clean.asr_test) == 912


def test_stylebkd_builds_dirty_label_poison_from_the_aligned_file(data_dir: Path) -> None:
    train, test = load_split("sst2", "train"), load_split("sst2", "test")
    styled = load_split("stylebkd-bible-sst2", "train")
    out = build_attack(AttackConfig(name="stylebkd", rate=0.1, target=1), "sst2", 2).poison(train, test, random.Random(0))
    assert out.poisoned_count == round(0.1 * len(train))
    for i, (e, m) in enumerate(zip(out.train, out.mask)):
        if m:
            assert e.text == styled[i].text and e.label == 1 and train[i].label == 0
    non_target_rewritten = sum(e.label == 0 for e in load_split("stylebkd-bible-sst2", "test") if e.text)
    assert len(out.asr_test) == non_target_rewritten


def test_ready_made_sets_need_sst2() -> None:
    with pytest.raises(ConfigError, match="data.dataset"):
        build_attack(AttackConfig(name="hiddenkiller"), "agnews", 4).poison([], [], random.Random(0))


def test_registry_is_complete() -> None:
    assert set(ATTACKS) == {"badnets", "addsent", "hiddenkiller", "onion-badnets", "stylebkd", "p2p-aware", "p2p-guess"}
