"""Robust P2P: screening signals, dropping suspicious rows, the screened benign subset, oversampling and the
simulated trusted set. These tests check data invariants only; effectiveness is measured in docs/robust.md."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poison2poison.config import DefenseConfig, load_config
from poison2poison.data import Example
from poison2poison.data.catalog import load_split
from poison2poison.defenses import DefenseContext
from poison2poison.defenses.lexical import lexical_scores
from poison2poison.defenses.p2p import P2P, least_suspicious_pool, most_suspicious
from poison2poison.defenses.runner import simulated_trusted_set
from poison2poison.defenses.screening import combine_suspicion, percentile_within_label, screen_rows
from poison2poison.errors import ConfigError
from poison2poison.io import read_json
from poison2poison.pipeline import prepare_data, run_experiment
from poison2poison.tasks import SENTIMENT
from tests.test_lexical import _labelled_corpus, _poison
from tests.test_p2p import defended

WORDS = "good bad film plot actor scene story music slow fun dull sharp long short warm cold".split()


def _corpus(size: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    return [Example(" ".join(rng.choice(WORDS) for _ in range(6)), rng.randint(0, 1)) for _ in range(size)]


def test_lexical_score_singles_out_a_label_pure_inserted_word() -> None:
    rows = _corpus(400)
    poisoned = set(random.Random(1).sample(range(400), 20))
    rows = [Example(e.text + " cf", 1) if i in poisoned else e for i, e in enumerate(rows)]
    scores = lexical_scores([e.text for e in rows], [e.label for e in rows], min_count=5)
    top = set(np.argsort(-scores, kind="stable")[:20].tolist())
    assert top == poisoned


def test_lexical_score_ignores_rare_ngrams_and_checks_lengths() -> None:
    scores = lexical_scores(["alpha beta", "gamma delta", "alpha beta"], [1, 0, 1], min_count=5)
    assert scores.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        lexical_scores(["a"], [0, 1])


@settings(max_examples=50, deadline=None)
@given(data=st.lists(st.tuples(st.integers(0, 2), st.floats(-5, 5)), min_size=1, max_size=80))
def test_percentiles_are_within_label_monotone_and_tie_fair(data: list[tuple[int, float]]) -> None:
    labels = [label for label, _ in data]
    scores = np.array([score for _, score in data])
    ranks = percentile_within_label(scores, labels)
    assert ((ranks >= 0) & (ranks <= 1)).all()
    for i in range(len(data)):
        for j in range(len(data)):
            if labels[i] == labels[j] and scores[i] < scores[j]:
                assert ranks[i] < ranks[j]
            if labels[i] == labels[j] and scores[i] == scores[j]:
                assert ranks[i] == ranks[j]


def test_combined_suspicion_is_the_largest_rank() -> None:
    labels = [0, 0, 0, 1, 1]
    a, b = np.array([0.0, 1.0, 2.0, 0.0, 1.0]), np.array([2.0, 1.0, 0.0, 0.0, 1.0])
    assert combine_suspicion({"a": a, "b": b}, labels).tolist() == [1.0, 0.5, 1.0, 0.0, 1.0]
    with pytest.raises(ValueError):
        combine_suspicion({}, labels)


suspicion_rows = st.lists(st.tuples(st.integers(0, 1), st.floats(0, 1)), min_size=20, max_size=200)


@settings(max_examples=50, deadline=None)
@given(rows=suspicion_rows, drop=st.floats(0.0, 0.3), seed=st.integers(0, 100))
def test_dropped_rows_are_the_most_suspicious_and_never_benign(rows, drop: float, seed: int) -> None:
    train = [Example(f"row {i}", label) for i, (label, _) in enumerate(rows)]
    suspicion = [s for _, s in rows]
    config = DefenseConfig(name="p2p", rho=0.2, screen=["lexical"], screen_pool=0.5, drop_suspicious=drop)
    try:
        prepared = P2P(config, SENTIMENT).prepare(train, random.Random(seed), DefenseContext(suspicion=suspicion))
    except ConfigError:
        return  # a label too small to fill its benign share from the pool: refused, never padded with other rows
    dropped = set(prepared.dropped_rows)
    assert len(dropped) == round(drop * len(train))
    if dropped:
        assert min(suspicion[i] for i in dropped) >= max(suspicion[i] for i in range(len(train)) if i not in dropped)
    assert not dropped & set(prepared.benign_rows)
    kept_texts = Counter(s.text for s in prepared.samples)
    assert all(kept_texts[train[i].text] == 0 for i in dropped)
    assert sum(kept_texts.values()) == len(train) - len(dropped)
    kept = [i for i in range(len(train)) if i not in dropped]
    pool = least_suspicious_pool([e.label for e in train], suspicion, 0.5, kept, [e.text for e in train])
    assert set(prepared.benign_rows) <= set(pool)


@settings(max_examples=50, deadline=None)
@given(suspicion=st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=2, max_size=60), fraction=st.floats(0, 1),
       seed=st.integers(0, 1000))
def test_tied_rows_are_taken_alike_whatever_the_order_of_the_data(suspicion: list[float], fraction: float,
                                                                  seed: int) -> None:
    """A published poisoned set may list its poisoned rows first: the order of the file must not decide ties."""
    texts = [f"row {i}" for i in range(len(suspicion))]
    labels = [i % 2 for i in range(len(suspicion))]
    order = list(range(len(suspicion)))
    random.Random(seed).shuffle(order)

    def shuffled(values: list) -> list:
        return [values[i] for i in order]

    def chosen(rows: list[int], items: list) -> set:
        return {items[i] for i in rows}

    taken = most_suspicious(suspicion, fraction, texts)
    assert chosen(most_suspicious(shuffled(suspicion), fraction, shuffled(texts)), shuffled(texts)) == chosen(taken, texts)
    assert len(taken) == round(fraction * len(suspicion))
    pool = least_suspicious_pool(labels, suspicion, fraction or 0.5, range(len(texts)), texts)
    again = least_suspicious_pool(shuffled(labels), shuffled(suspicion), fraction or 0.5, range(len(texts)),
                                  shuffled(texts))
    assert chosen(again, shuffled(texts)) == chosen(pool, texts)


def test_most_suspicious_takes_the_top_fraction() -> None:
    texts = ["a", "b", "c", "d"]
    assert most_suspicious([0.5, 0.9, 0.8, 0.1], 0.5, texts) == [1, 2]
    assert most_suspicious([0.5, 0.9], 0.0, texts[:2]) == []


def test_least_suspicious_pool_takes_a_share_of_each_label() -> None:
    labels = [0] * 10 + [1] * 10
    suspicion = [i / 20 for i in range(20)]
    texts = [f"row {i}" for i in range(20)]
    assert least_suspicious_pool(labels, suspicion, 0.3, range(20), texts) == [0, 1, 2, 10, 11, 12]


@pytest.mark.parametrize("mode,extra", [("replace", 0), ("append", 20)])
def test_oversampling_repeats_each_benign_sample(mode: str, extra: int) -> None:
    train = [Example(f"row {i}", i % 2) for i in range(100)]
    prepared = P2P(DefenseConfig(name="p2p", oversample=5, mode=mode), SENTIMENT).prepare(
        train, random.Random(0), DefenseContext()
    )
    benign = Counter(s.text for s in prepared.samples if s.trigger)
    assert len(benign) == 20 and set(benign.values()) == {5}
    assert len(prepared.samples) == 80 + extra + 100


def test_screening_options_need_suspicion_and_defaults_are_the_paper() -> None:
    train = [Example(f"row {i}", i % 2) for i in range(50)]
    with pytest.raises(ConfigError, match="screen"):
        P2P(DefenseConfig(name="p2p", drop_suspicious=0.1), SENTIMENT).prepare(train, random.Random(0), DefenseContext())
    paper = P2P(DefenseConfig(name="p2p"), SENTIMENT).prepare(train, random.Random(3), DefenseContext())
    ignored = P2P(DefenseConfig(name="p2p"), SENTIMENT).prepare(
        train, random.Random(3), DefenseContext(suspicion=[1.0] * 50)
    )
    assert paper.samples == ignored.samples and paper.dropped_rows == []


def test_lexical_screening_is_saved_and_reused(tmp_path: Path) -> None:
    train = _corpus(120)
    config = load_config(None, ["defense.name=p2p", "defense.screen=[lexical]", "defense.drop_suspicious=0.1"])
    path = tmp_path / "screening.json"
    first = defended(config, train, screening_path=path)
    saved = read_json(path)
    assert len(saved["suspicion"]) == 120 and "lexical" in saved["seconds"]
    saved["suspicion"] = [1.0 if i < 12 else 0.0 for i in range(120)]  # a reused file decides what is dropped
    path.write_text(json.dumps(saved))
    again = defended(config, train, screening_path=path)
    assert again.dropped_rows == list(range(12)) and len(first.dropped_rows) == 12


def test_screening_cache_is_shared_by_rows_that_screen_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2P_CACHE_DIR", str(tmp_path / "cache"))
    train = _corpus(120)
    drop = load_config(None, ["defense.name=p2p", "defense.screen=[lexical]", "defense.drop_suspicious=0.1"])
    defended(drop, train, screening_path=tmp_path / "a.json")
    (cached,) = (tmp_path / "cache" / "screening").iterdir()
    planted = read_json(cached)
    planted["suspicion"] = [1.0 if i < 12 else 0.0 for i in range(120)]
    cached.write_text(json.dumps(planted))
    pool = load_config(None, ["defense.name=p2p", "defense.screen=[lexical]", "defense.screen_pool=0.5",
                              "defense.drop_suspicious=0.1"])
    assert defended(pool, train, screening_path=tmp_path / "b.json").dropped_rows == list(range(12))
    assert read_json(tmp_path / "b.json")["suspicion"] == planted["suspicion"]  # the run keeps its own copy
    other = load_config(None, ["defense.name=p2p", "defense.screen=[lexical]", "defense.screen_min_count=2",
                               "defense.drop_suspicious=0.1"])
    defended(other, train)
    assert len(list((tmp_path / "cache" / "screening").iterdir())) == 2  # a different screening is computed anew


def test_simulated_trusted_set_is_clean_held_out_and_sized(data_dir: Path) -> None:
    config = load_config(None, ["data.train_size=500", "attack.rate=0.05", "defense.name=p2p",
                                "defense.source=trusted", "defense.trusted_size=60"])
    data = prepare_data(config)
    trusted = simulated_trusted_set(config, data.held_out_clean)
    assert trusted is not None and len(trusted) == 60
    assert not {e.text for e in trusted} & {e.text for e in data.poisoned.train}
    original = {(e.text, e.label) for e in load_split("sst2", "train")}
    assert {(e.text, e.label) for e in trusted} <= original  # unpoisoned rows, as the clean split has them
    assert abs(Counter(e.label for e in trusted)[1] - 60 * 0.55) < 6
    too_big = config.model_copy(update={"defense": config.defense.model_copy(update={"trusted_size": 10**6})})
    with pytest.raises(ConfigError, match="trusted_size"):
        simulated_trusted_set(too_big, data.held_out_clean)


def test_robust_run_end_to_end_with_a_reference_fine_tune(tmp_path: Path, data_dir: Path) -> None:
    overrides = [
        "data.train_size=120", "data.test_size=20", "train.epochs=1", "train.batch_size=16",
        "train.learning_rate=0.001", "model.tiny_hidden_size=32", "model.tiny_layers=1", "model.tiny_vocab_size=400",
        "model.max_length=48", "attack.rate=0.1", "defense.name=p2p", "defense.screen=[lexical,reference]",
        "defense.screen_epochs=0.5", "defense.drop_suspicious=0.1", "defense.oversample=2",
    ]
    metrics = run_experiment(load_config(None, overrides), tmp_path)
    assert metrics["dropped_rows"] == 12 and 0 <= metrics["dropped_poisoned"] <= 12
    assert metrics["benign_rows"] == 24 and metrics["screen_seconds"] > 0
    assert metrics["defense_variant"] == "p2p(random, screen=lexical+reference, pool=0.4, drop=0.1, oversample=2)"
    assert set(read_json(tmp_path / "screening.json")["seconds"]) == {"lexical", "reference"}


def test_p2p_plus_fills_the_robust_defaults_but_keeps_explicit_settings() -> None:
    plus = load_config(None, ["defense.name=p2p+"]).defense
    assert plus.screen == ["lexical", "reference"] and plus.drop_suspicious == 0.1 and plus.has_benign_subset
    own = load_config(None, ["defense.name=p2p+", "defense.drop_suspicious=0", "defense.screen=[lexical]"]).defense
    assert own.screen == ["lexical"] and own.drop_suspicious == 0
    paper = load_config(None, ["defense.name=p2p"]).defense
    assert paper.screen == [] and paper.drop_suspicious == 0


def test_the_reference_is_fitted_only_where_confirmation_finds_no_trigger_when_asked() -> None:
    """A confirmed trigger means the poison is n-grams, which the lexical signal ranks on its own: the reference
    fine-tune is skipped. Where nothing is confirmed (a style or paraphrase trigger looks like clean data) it runs."""
    config = load_config(None, [
        "model.tiny_hidden_size=32", "model.tiny_layers=1", "model.tiny_vocab_size=400", "model.max_length=16",
        "train.batch_size=32", "defense.name=p2p+", "defense.screen_epochs=0.5",
        "defense.skip_reference_when_confirmed=true",
    ])
    clean = _labelled_corpus(400)
    poisoned, rows = _poison(clean, 30, "cf")
    suspicion, seconds = screen_rows(config, SENTIMENT, poisoned)
    assert set(seconds) == {"confirmation", "lexical"}
    assert set(np.argsort(-suspicion, kind="stable")[:30].tolist()) == rows
    _, seconds = screen_rows(config, SENTIMENT, clean)
    assert set(seconds) == {"confirmation", "lexical", "reference"}
    always = config.model_copy(update={"defense": config.defense.model_copy(
        update={"skip_reference_when_confirmed": False})})
    _, seconds = screen_rows(always, SENTIMENT, poisoned)
    assert set(seconds) == {"lexical", "reference"}


def test_reference_screening_is_reproducible(data_dir: Path) -> None:
    config = load_config(None, [
        "model.tiny_hidden_size=32", "model.tiny_layers=1", "model.tiny_vocab_size=400", "model.max_length=48",
        "train.batch_size=16", "train.learning_rate=0.001", "defense.name=p2p", "defense.screen=[reference]",
        "defense.screen_epochs=0.5",
    ])
    train = load_split("sst2", "dev")[:64]
    first, _ = screen_rows(config, SENTIMENT, train)
    second, _ = screen_rows(config, SENTIMENT, train)
    assert np.array_equal(first, second)  # the reference model is seeded, so the same rows are dropped every run


def test_every_row_of_the_robust_table_is_a_valid_config_on_every_setting() -> None:
    """Each row is one `p2p run` command (benchmarks/robust_table.sh): a mistyped key would fail a cell hours in."""
    root = Path(__file__).resolve().parent.parent
    rows = [line.split() for line in (root / "benchmarks" / "robust_rows.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert len({name for name, *_ in rows}) == len(rows)  # names are the run folders: no two rows share one
    for setting in sorted((root / "configs" / "robust").glob("*.yaml")):
        for name, *overrides in rows:
            config = load_config(setting, overrides)
            assert config.defense.name in ("none", "p2p", "p2p+"), (setting.name, name)


def test_the_paired_floor_is_the_attacked_subsample_with_its_poison_restored(data_dir: Path) -> None:
    attacked = load_config(None, ["data.train_size=500", "attack.rate=0.05"])
    floor = load_config(None, ["data.train_size=500", "attack.rate=0.05", "attack.paired_floor=true"])
    poisoned, paired = prepare_data(attacked), prepare_data(floor)
    original = {(e.text, e.label) for e in load_split("sst2", "train")}
    assert not any(paired.poisoned.mask) and sum(poisoned.poisoned.mask) == 25
    for before, after, was_poisoned in zip(poisoned.poisoned.train, paired.poisoned.train, poisoned.poisoned.mask):
        assert (after == before) != was_poisoned  # exactly the poisoned rows change
        assert (after.text, after.label) in original
        if was_poisoned:
            words = before.text.split()
            assert after.label != attacked.attack.target
            assert any(words[:i] + words[i + 1:] == after.text.split() for i in range(len(words)))  # one word less
    assert [e.text for e in paired.poisoned.asr_test] == [e.text for e in poisoned.poisoned.asr_test]
    assert [e.text for e in paired.test] == [e.text for e in poisoned.test]
    ready_made = load_config(None, ["attack.name=hiddenkiller", "attack.paired_floor=true"])
    with pytest.raises(ConfigError, match="paired_floor.*hiddenkiller"):
        prepare_data(ready_made)
