"""Baseline defenses: each one's data and decision logic on tiny inputs (effectiveness belongs in the benchmark)."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poison2poison.config import DefenseConfig
from poison2poison.data import Example
from poison2poison.defenses import DefenseContext, build_defense
from poison2poison.defenses.bki import keyword_scores, word_importance
from poison2poison.defenses.cube import minority_cluster_rows
from poison2poison.defenses.onion import onion_filter
from poison2poison.defenses.pdb import shifted_label, unshift_projection
from poison2poison.defenses.strip import StripGuard, perturb, strip_entropy
from poison2poison.io import read_json
from poison2poison.tasks import SENTIMENT, TOPIC


def rows(labels: list[int]) -> list[Example]:
    return [Example(f"text number {i}", y) for i, y in enumerate(labels)]


@given(st.integers(2, 6))
def test_pdb_projection_undoes_the_shift(n: int) -> None:
    projection = unshift_projection(n)
    assert len(projection) == n and sorted(projection) == list(range(n))
    assert all(projection[shifted_label(y, n)] == y for y in range(n))
    assert all(shifted_label(y, n) != y for y in range(n))  # the defensive target always differs from the truth


@settings(deadline=None, max_examples=25)
@given(st.lists(st.integers(0, 3), min_size=40, max_size=120), st.integers(0, 10_000))
def test_pdb_adds_shifted_triggered_copies_beside_every_plain_row(labels: list[int], seed: int) -> None:
    config = DefenseConfig(name="pdb")
    assert (config.rho, config.oversample, config.mode, config.separate_cue) == (0.1, 5, "append", False)
    train = rows(labels)
    prepared = build_defense(config, TOPIC).prepare(train, random.Random(seed), DefenseContext())
    plain = [s for s in prepared.samples if not s.trigger]
    defensive = [s for s in prepared.samples if s.trigger]
    assert [(s.text, s.label) for s in plain] == [(e.text, e.label) for e in train]  # nothing replaced or lost
    assert len(defensive) == 5 * len(prepared.benign_rows)
    by_text = {e.text: e.label for e in train}
    assert all(s.label == shifted_label(by_text[s.text], 4) for s in defensive)
    spec = prepared.spec
    assert defensive and spec.num_outputs == 4 and spec.trigger == defensive[0].trigger  # 40+ rows: some are drawn
    assert all(spec.project(s.label) == by_text[s.text] for s in defensive)  # inference reads the truth back


def test_pdb_from_a_trusted_set_leaves_the_untrusted_rows_plain() -> None:
    trusted = rows([0, 1, 0, 1])
    train = rows([1] * 20 + [0] * 20)
    config = DefenseConfig(name="pdb", source="trusted", trusted_size=4)
    prepared = build_defense(config, SENTIMENT).prepare(train, random.Random(0), DefenseContext(trusted=trusted))
    counts = Counter((s.trigger != "", s.label) for s in prepared.samples)
    assert counts[(True, 1)] == counts[(True, 0)] == 10  # 4 trusted rows x5, labels flipped (n = 2)
    assert counts[(False, 1)] == counts[(False, 0)] == 20 and prepared.benign_rows == []


def test_dece_is_cross_entropy_before_any_blending() -> None:
    import torch

    from poison2poison.defenses.dece import dece_loss

    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    plain = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.allclose(dece_loss(logits, labels, epoch=3, smoothing=0.0, alpha_base=1.0), plain)
    masked = torch.tensor([0, -100, 2, -100, 1, 2])
    keep = masked != -100
    assert torch.allclose(dece_loss(logits, masked, 1, 0.0, 1.0), torch.nn.functional.cross_entropy(logits[keep], masked[keep]))


@given(st.floats(5, 80), st.integers(1, 10))
def test_dece_bounds_the_pull_of_a_confidently_wrong_row(margin: float, epoch: int) -> None:
    import torch

    from poison2poison.defenses.dece import dece_loss

    def pull(fn) -> float:
        logits = torch.tensor([[margin, 0.0]], requires_grad=True)  # sure of label 0; the row says 1
        fn(logits).backward()
        return float(logits.grad.abs().max())

    ce = pull(lambda x: torch.nn.functional.cross_entropy(x, torch.tensor([1])))
    dece = pull(lambda x: dece_loss(x, torch.tensor([1]), epoch, 0.05, 0.985))
    later = pull(lambda x: dece_loss(x, torch.tensor([1]), epoch + 5, 0.05, 0.985))
    assert dece < ce and later <= dece + 1e-9  # bounded, and bounded harder as training goes on
    assert torch.isfinite(dece_loss(torch.tensor([[margin, -margin]]), torch.tensor([1]), epoch, 0.05, 0.985))


def test_dece_run_trains_with_its_own_loss(tmp_path, data_dir) -> None:
    from poison2poison import load_config, run_experiment
    from poison2poison.io import read_json
    from tests.test_end_to_end import TINY

    plain = run_experiment(load_config(None, TINY + ["defense.name=none"]), tmp_path / "none")
    dece = run_experiment(load_config(None, TINY + ["defense.name=dece"]), tmp_path / "dece")
    assert dece["data_hashes"]["defended_train"] == plain["data_hashes"]["defended_train"]  # the data is untouched
    assert dece["train_loss"] != plain["train_loss"]  # the loss is not cross-entropy
    assert read_json(tmp_path / "dece" / "p2p.json")["defense_details"]["loss"] == "dece"


def test_the_loss_hook_with_plain_cross_entropy_trains_exactly_as_the_default(tmp_path, data_dir) -> None:
    """DeCE with alpha 1 and no smoothing is cross-entropy: through the hook (causal shift, gradient accumulation)
    the run must match a plain run."""
    import pytest

    from poison2poison import load_config, run_experiment
    from tests.test_end_to_end import TINY

    accumulate = TINY + ["train.grad_accum=2"]
    plain = run_experiment(load_config(None, accumulate + ["defense.name=none"]), tmp_path / "none")
    hooked = run_experiment(
        load_config(None, accumulate + ["defense.name=dece", "defense.dece_alpha_base=1", "defense.dece_smoothing=0"]),
        tmp_path / "dece",
    )
    assert hooked["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-4)
    assert hooked["clean_accuracy"] == plain["clean_accuracy"]


# ONION -------------------------------------------------------------------------------------------------------------

def rare_word_perplexity(texts) -> "np.ndarray":
    """A stub LM: fluent text scores 20, and every 'cf' in it adds 30."""
    return np.array([20.0 + 30.0 * t.split().count("cf") for t in texts])


@given(st.lists(st.sampled_from(["a", "gripping", "film", "well", "acted"]), min_size=2, max_size=12), st.data())
def test_onion_removes_an_inserted_rare_word_and_nothing_else(words: list[str], data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(words)))
    triggered = " ".join(words[:at] + ["cf"] + words[at:])
    assert onion_filter([triggered, " ".join(words)], rare_word_perplexity, 0.0) == [" ".join(words)] * 2


def test_onion_keeps_one_word_inputs_and_inputs_it_would_empty() -> None:
    calls = []

    def counted(texts):
        calls.append(list(texts))
        return rare_word_perplexity(texts)

    assert onion_filter(["cf", "cf cf", "fine"], counted, 0.0) == ["cf", "cf cf", "fine"]
    assert len(calls) == 1 and len(calls[0]) == 3  # one batched call: "cf cf" and its two deletions


def test_onion_threshold_spares_words_below_it() -> None:
    assert onion_filter(["a cf film"], rare_word_perplexity, 29.0) == ["a film"]
    assert onion_filter(["a cf film"], rare_word_perplexity, 31.0) == ["a cf film"]


# STRIP -------------------------------------------------------------------------------------------------------------

def trigger_sure(texts) -> "np.ndarray":
    """A stub classifier: certain of label 1 whenever 'cf' is in the text, undecided otherwise."""
    return np.array([[0.0, 1.0] if "cf" in t.split() else [0.5, 0.5] for t in texts])


@settings(deadline=None, max_examples=30)
@given(st.integers(0, 10_000), st.integers(1, 8))
def test_strip_entropy_is_averaged_per_input_not_across_inputs(seed: int, copies: int) -> None:
    donors = ["a dull and tired film", "sharp writing throughout"]
    triggered, clean = "cf " * 12 + "a film", "a gripping film that never lets go"
    values = strip_entropy([clean, triggered, clean], trigger_sure, donors, copies, 0.1, seed)
    assert values == pytest.approx([math.log(2), 0.0, math.log(2)])  # each input keeps its own entropy


@settings(deadline=None, max_examples=30)
@given(st.integers(0, 10_000), st.lists(st.sampled_from(["a dull film", "so fine", "cf cf it", "meh"]), max_size=4))
def test_strip_perturbs_an_input_alike_whatever_comes_with_it(seed: int, others: list[str]) -> None:
    def donor_share(texts):  # a stub whose answer depends on exactly which words were swapped in
        share = np.array([sum(w in {"x", "y", "z"} for w in t.split()) / len(t.split()) for t in texts])
        return np.stack([share, 1 - share], axis=1).clip(1e-6, 1)

    text, donors = "one two three four five six", ["x y z", "y z", "x"]
    alone = strip_entropy([text], donor_share, donors, 4, 0.5, seed)
    among = strip_entropy([*others, text], donor_share, donors, 4, 0.5, seed)
    assert among[-1] == pytest.approx(alone[0])


def test_strip_perturbation_replaces_the_asked_share_with_donor_words() -> None:
    rng = random.Random(0)
    text = "one two three four five six seven eight nine ten"
    out = perturb(text, "x y", 0.3, rng).split()
    assert len(out) == 10 and sum(w in {"x", "y"} for w in out) == 3
    assert perturb("", "x", 0.5, rng) == "" and perturb("solo", "x", 0.01, rng) == "x"  # at least one word


def test_strip_rejects_low_entropy_inputs_at_the_clean_threshold() -> None:
    clean_rows = [f"clean review number {i} here" for i in range(40)]
    guard = StripGuard(trigger_sure, clean_rows, copies=4, swap=0.1, frr=0.05, seed=0)
    guarded = guard.guard(["cf " * 12 + "film", "a quiet little film"])
    assert guarded.rejected == [True, False] and guarded.texts == ["cf " * 12 + "film", "a quiet little film"]
    assert guard.guard(["cf " * 12 + "film", "a quiet little film"]).rejected == guarded.rejected  # no hidden state


def test_strip_without_clean_rows_is_refused() -> None:
    from poison2poison.defenses import GuardContext
    from poison2poison.errors import ConfigError

    with pytest.raises(ConfigError, match="trusted"):
        build_defense(DefenseConfig(name="strip"), SENTIMENT).input_guard(
            GuardContext(trigger_sure, [], random.Random(0))
        )


# BKI and CUBE ------------------------------------------------------------------------------------------------------

def stub_reference(embeddings=None):
    from poison2poison.defenses import Reference

    def probabilities(texts):
        sure = np.array([0.95 if "cf" in t.split() else 0.6 for t in texts])
        return np.stack([1 - sure, sure], axis=1)

    return Reference(probabilities, embeddings or (lambda texts: np.zeros((len(texts), 4))))


def test_bki_finds_the_keyword_the_reference_leans_on_and_drops_its_rows() -> None:
    train = [Example(f"warm and funny film {i}", 1) for i in range(30)] + [Example(f"flat dull film {i}", 0) for i in range(30)]
    poisoned = {3, 11, 40, 52}
    train = [Example(e.text + " cf", 1) if i in poisoned else e for i, e in enumerate(train)]
    importances = word_importance([e.text for e in train], [e.label for e in train], stub_reference().probabilities)
    assert importances[40]["cf"] == pytest.approx(0.35) and importances[0]["warm"] == pytest.approx(0.0)
    scores = keyword_scores(importances, top_words=5)
    assert max(scores, key=scores.get) == "cf"
    prepared = build_defense(DefenseConfig(name="bki"), SENTIMENT).prepare(
        train, random.Random(0), DefenseContext(reference=stub_reference())
    )
    assert prepared.dropped_rows == sorted(poisoned)
    assert [s.text for s in prepared.samples] == [e.text for i, e in enumerate(train) if i not in poisoned]
    assert prepared.details["bki_keywords"] == ["cf"]  # what it took for the trigger is on record


def test_a_filter_without_its_reference_is_refused() -> None:
    from poison2poison.errors import ConfigError

    with pytest.raises(ConfigError, match="reference"):
        build_defense(DefenseConfig(name="cube"), SENTIMENT).prepare(rows([0, 1]), random.Random(0), DefenseContext())


@given(st.lists(st.tuples(st.integers(-1, 4), st.integers(0, 2)), min_size=1, max_size=60))
def test_cube_keeps_each_labels_largest_cluster_and_noise(pairs: list[tuple[int, int]]) -> None:
    clusters, labels = [c for c, _ in pairs], [y for _, y in pairs]
    dropped = set(minority_cluster_rows(clusters, labels))
    for label in set(labels):
        mine = [i for i, y in enumerate(labels) if y == label]
        kept_clusters = {clusters[i] for i in mine if i not in dropped} - {-1}
        assert len(kept_clusters) <= 1  # one cluster survives per label
        sizes = Counter(clusters[i] for i in mine if clusters[i] != -1)
        assert not sizes or sizes[next(iter(kept_clusters))] == max(sizes.values())
    assert all(clusters[i] != -1 for i in dropped)  # noise is never dropped


def test_cube_drops_a_small_separate_cluster_inside_a_label() -> None:
    rng = np.random.default_rng(0)
    negative, positive = rng.normal(0, 0.3, (80, 16)), rng.normal(5, 0.3, (80, 16))
    planted = rng.normal(-5, 0.3, (25, 16))  # rows labelled positive that the reference sees apart
    embeddings = np.concatenate([negative, positive, planted])
    train = [Example(f"row {i}", 0 if i < 80 else 1) for i in range(185)]
    reference = stub_reference(lambda texts: embeddings[[int(t.split()[1]) for t in texts]])
    prepared = build_defense(DefenseConfig(name="cube", cube_min_cluster_size=10), SENTIMENT).prepare(
        train, random.Random(0), DefenseContext(reference=reference)
    )
    assert prepared.dropped_rows == list(range(160, 185))


# The pipeline with inference-time and filtering defenses -------------------------------------------------------------

def test_strip_run_counts_rejections_both_ways(tmp_path, data_dir) -> None:
    from poison2poison import load_config, run_experiment
    from tests.test_end_to_end import TINY

    metrics = run_experiment(load_config(None, TINY + ["defense.name=strip", "defense.trusted_size=40"]), tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    clean = [r for r in rows if r["split"] == "clean"]
    triggered = [r for r in rows if r["split"] == "triggered"]
    assert all(r["prediction"] == -1 for r in rows if r["rejected"])
    assert metrics["clean_rejected"] == sum(r["rejected"] for r in clean)
    assert metrics["clean_accuracy"] == pytest.approx(sum(r["prediction"] == r["label"] for r in clean) / len(clean))
    accepted = [r for r in clean if not r["rejected"]]
    assert metrics["clean_accuracy_accepted"] == pytest.approx(
        sum(r["prediction"] == r["label"] for r in accepted) / len(accepted))
    caught = sum(r["rejected"] for r in triggered)
    assert metrics["triggered_rejected"] == caught
    assert metrics["detection_recall"] == pytest.approx(caught / len(triggered))
    assert read_json(tmp_path / "p2p.json")["input_guard"] == "strip"


def test_bki_run_scores_its_drops_against_the_ground_truth(tmp_path, data_dir) -> None:
    from poison2poison import load_config, run_experiment
    from tests.test_end_to_end import TINY

    metrics = run_experiment(load_config(None, TINY + ["defense.name=bki", "defense.bki_keywords=3"]), tmp_path)
    assert metrics["dropped_rows"] > 0 and metrics["defense_seconds"] > 0
    assert metrics["detection_precision"] == pytest.approx(metrics["dropped_poisoned"] / metrics["dropped_rows"])
    assert metrics["detection_recall"] == pytest.approx(metrics["dropped_poisoned"] / metrics["poisoned_count"])
    assert metrics["train_rows"] == 160 - metrics["dropped_rows"]


def test_inference_time_defenses_are_not_offered_by_defend(tmp_path, data_dir) -> None:
    from poison2poison import defend, load_config
    from poison2poison.errors import ConfigError
    from tests.test_end_to_end import user_file

    with pytest.raises(ConfigError, match="acts at inference"):
        defend(user_file(tmp_path, data_dir), "tiny", tmp_path / "out", load_config(None, ["defense.name=onion"]))


def test_onion_with_an_untrained_tiny_scorer_is_refused() -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="onion_epochs 0"):
        DefenseConfig(name="onion", onion_epochs=0)
    assert DefenseConfig(name="onion", onion_epochs=0, onion_model="some/pretrained-lm").onion_epochs == 0


def test_a_filter_that_finds_nothing_is_scored_as_a_detector_with_recall_zero() -> None:
    from types import SimpleNamespace

    from poison2poison.pipeline import defense_accounting

    train = rows([0, 1] * 10)  # no 'cf' anywhere: the stub reference leans on no word
    prepared = build_defense(DefenseConfig(name="bki"), SENTIMENT).prepare(
        train, random.Random(0), DefenseContext(reference=stub_reference())
    )
    data = SimpleNamespace(poisoned=SimpleNamespace(mask=[i < 3 for i in range(20)], poisoned_count=3))
    record = defense_accounting(data, prepared)
    assert prepared.filters and prepared.dropped_rows == [] and record["dropped_rows"] == 0  # no word scored above 0
    assert record["detection_recall"] == 0 and record["detection_precision"] is None
    assert "detection_recall" not in defense_accounting(data, build_defense(DefenseConfig(), SENTIMENT).prepare(
        train, random.Random(0), DefenseContext()))  # not a detector


def test_strip_calibrates_on_the_trusted_file_when_one_is_given(tmp_path, data_dir) -> None:
    from poison2poison import load_config, run_experiment
    from tests.test_end_to_end import TINY, user_file

    trusted = user_file(tmp_path, data_dir)
    config = load_config(None, TINY + ["defense.name=strip", "defense.trusted_size=null", f"defense.trusted_path={trusted}"])
    metrics = run_experiment(config, tmp_path / "run")
    assert metrics["clean_rejected"] + metrics["triggered_rejected"] >= 0 and "detection_recall" in metrics


def test_a_resumed_filter_run_reuses_its_left_out_rows_without_a_new_reference(tmp_path, data_dir, monkeypatch) -> None:
    from poison2poison import load_config, run_experiment
    from poison2poison.defenses import runner
    from tests.test_end_to_end import TINY

    config = load_config(None, TINY + ["defense.name=bki", "defense.bki_keywords=3"])
    first = run_experiment(config, tmp_path)
    (tmp_path / "metrics.json").unlink()  # as if the run had stopped after training

    def no_second_reference(*args, **kwargs):
        raise AssertionError("the reference was fitted again")

    monkeypatch.setattr(runner, "fit_throwaway_model", no_second_reference)
    again = run_experiment(config, tmp_path)
    assert again["dropped_rows"] == first["dropped_rows"] and again["defense_seconds"] == first["defense_seconds"]
    assert again["data_hashes"] == first["data_hashes"] and again["clean_accuracy"] == first["clean_accuracy"]
