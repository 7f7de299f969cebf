"""Trigger confirmation (lexical.py) and its use by P2P's `drop_confirmed`: which n-grams count as planted triggers
and which rows go. Data invariants only; how much it removes on real poisoned sets is in docs/robust.md."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from poison2poison.cli import app
from poison2poison.config import DefenseConfig, load_config
from poison2poison.data import Example
from poison2poison.defenses import DefenseContext
from poison2poison.defenses.lexical import confirmed_triggers, confirms, label_pure_ngrams, row_ngrams
from poison2poison.defenses.p2p import P2P
from poison2poison.defenses.runner import left_out_records
from poison2poison.errors import RunDirError
from poison2poison.rundir import claim_run_dir, how_it_differs
from poison2poison.tasks import SENTIMENT

LABEL_WORDS = {0: "bad dull awful weak flat tired".split(), 1: "good sharp great warm fresh bright".split()}
NEUTRAL = "film plot actor scene story music movie cast".split()


def _labelled_corpus(size: int, seed: int = 0, agree: float = 0.8) -> list[Example]:
    """Rows whose words argue for their label, as in real reviews: three opinion words, each from the label's own
    vocabulary with probability `agree` (so no word is label-pure), among three neutral ones."""
    rng = random.Random(seed)
    rows = []
    for _ in range(size):
        label = rng.randint(0, 1)
        opinions = [rng.choice(LABEL_WORDS[label if rng.random() < agree else 1 - label]) for _ in range(3)]
        words = opinions + rng.sample(NEUTRAL, 3)
        rng.shuffle(words)
        rows.append(Example(" ".join(words), label))
    return rows


def _poison(rows: list[Example], count: int, word: str, seed: int = 1) -> tuple[list[Example], set[int]]:
    """Dirty-label insertion: `count` label-0 rows get `word` and label 1."""
    negatives = [i for i, e in enumerate(rows) if e.label == 0]
    chosen = set(random.Random(seed).sample(negatives, count))
    return [Example(f"{e.text} {word}", 1) if i in chosen else e for i, e in enumerate(rows)], chosen


def _split(rows: list[Example]) -> tuple[list[str], list[int]]:
    return [e.text for e in rows], [e.label for e in rows]


def test_an_inserted_trigger_is_confirmed_and_only_its_rows_go() -> None:
    rows, poisoned = _poison(_labelled_corpus(400), 30, "cf")
    finding = confirmed_triggers(*_split(rows))
    assert finding.triggers == {"cf": 1}
    assert set(finding.rows) == poisoned


def test_a_pure_word_among_agreeing_words_is_a_candidate_but_not_confirmed() -> None:
    """A topic word (or `worst` in reviews) is label-pure too; its rows' other words agree with its label."""
    rows = _labelled_corpus(400)
    positives = [i for i, e in enumerate(rows) if e.label == 1][:30]
    rows = [Example(f"{e.text} zz", 1) if i in positives else e for i, e in enumerate(rows)]
    texts, labels = _split(rows)
    assert label_pure_ngrams([row_ngrams(t) for t in texts], labels).get("zz") == 1
    assert confirmed_triggers(texts, labels).triggers == {}


def test_confirmation_needs_a_large_effect_as_well_as_significance() -> None:
    """With many rows, a natural word a little harder than average is significant; it is still no trigger."""
    assert not confirms(against=278, rows=926, typical=0.22, tests=167)  # 30% against 22%: p ~ 1e-9, effect 1.36
    assert confirms(against=30, rows=60, typical=0.22, tests=167)  # half the rows argue for another label
    assert not confirms(against=4, rows=6, typical=0.22, tests=167)  # a large effect on too few rows
    assert not confirms(against=60, rows=60, typical=1.0, tests=1)  # no baseline, no verdict


def test_clean_or_tiny_data_confirms_nothing() -> None:
    assert confirmed_triggers(*_split(_labelled_corpus(300))).rows == []
    assert confirmed_triggers(["a b", "c d"], [0, 1]).triggers == {}
    only_triggers = ["cf"] * 30 + ["zz"] * 30  # pure words and nothing else to judge them by: no verdict, no crash
    assert confirmed_triggers(only_triggers, [1] * 30 + [0] * 30).triggers == {}
    with pytest.raises(ValueError):
        confirmed_triggers(["a"], [0, 1])


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_confirmation_does_not_depend_on_the_order_of_the_rows(seed: int) -> None:
    rows, _ = _poison(_labelled_corpus(300, seed % 7), 25, "tq", seed % 5)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    shuffled = [rows[i] for i in order]
    first, again = confirmed_triggers(*_split(rows)), confirmed_triggers(*_split(shuffled))
    assert again.triggers == first.triggers
    assert Counter(shuffled[i].text for i in again.rows) == Counter(rows[i].text for i in first.rows)


def test_p2p_drops_confirmed_rows_without_screening_and_never_trains_them() -> None:
    rows, poisoned = _poison(_labelled_corpus(400), 30, "cf")
    prepared = P2P(DefenseConfig(name="p2p", drop_confirmed=True), SENTIMENT).prepare(
        rows, random.Random(0), DefenseContext()
    )
    assert set(prepared.dropped_rows) == poisoned and prepared.filters
    assert prepared.details["confirmed_triggers"] == {"cf": 1}
    assert not set(prepared.benign_rows) & poisoned
    assert not any("cf" in s.text.split() for s in prepared.samples)
    assert len(prepared.samples) == len(rows) - len(poisoned)


def test_p2p_plus_unites_the_ranked_drop_with_the_confirmed_rows() -> None:
    rows, poisoned = _poison(_labelled_corpus(400), 30, "cf")
    suspicion = [1.0 if i < 40 else 0.0 for i in range(len(rows))]  # a screening whose top 10% misses the poison
    config = load_config(None, ["defense.name=p2p+"]).defense
    assert config.drop_confirmed and not load_config(None, ["defense.name=p2p"]).defense.drop_confirmed
    prepared = P2P(config, SENTIMENT).prepare(rows, random.Random(0), DefenseContext(suspicion=suspicion))
    assert set(prepared.dropped_rows) == set(range(40)) | poisoned
    reasons = {r["row"] - 1: r["reason"] for r in left_out_records(rows, prepared, config, ("negative", "positive"))}
    assert set(reasons) == set(prepared.dropped_rows)  # every row left out is listed once
    assert {i for i, why in reasons.items() if why == "carries the confirmed trigger 'cf'"} == poisoned
    assert all(why.startswith("among the most suspicious 10%") for i, why in reasons.items() if i not in poisoned)


def test_a_saved_run_that_predates_a_default_of_its_defense_is_not_todays_run(tmp_path: Path) -> None:
    """A p2p+ run made before `drop_confirmed` existed did not drop confirmed rows: it must not pass for one that did."""
    config = load_config(None, ["defense.name=p2p+"])
    hashes = {"poisoned_train": "p", "clean_test": "c", "triggered_test": "t"}
    (tmp_path / "metrics.json").write_text(json.dumps({"data_hashes": hashes}))  # finished before run.json existed
    (tmp_path / "config.yaml").write_text(config.to_yaml())
    assert how_it_differs(tmp_path, config, hashes) is None  # the same run
    (tmp_path / "config.yaml").write_text(config.to_yaml().replace("  drop_confirmed: true\n", ""))
    with pytest.raises(RunDirError, match="it predates the default drop_confirmed of its defense"):
        claim_run_dir(tmp_path, config, hashes, "metrics.json")
    paper = load_config(None, ["defense.name=p2p"])  # a plain default reproduces the old behaviour: still the same run
    (tmp_path / "config.yaml").write_text(paper.to_yaml().replace("  drop_confirmed: false\n", ""))
    assert how_it_differs(tmp_path, paper, hashes) is None


def test_scan_lists_the_confirmed_triggers_and_writes_the_rows_that_carry_them(tmp_path: Path) -> None:
    rows, poisoned = _poison(_labelled_corpus(400), 30, "cf")
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n" for e in rows))
    result = CliRunner().invoke(app, ["scan", "--data", str(data), "--out", str(tmp_path / "flagged.jsonl")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "30 of 400 rows carry a confirmed trigger" in said and "│ cf" in said
    flagged = [json.loads(line) for line in (tmp_path / "flagged.jsonl").read_text().splitlines()]
    assert {f["row"] - 1 for f in flagged} == poisoned  # 1-based, as the rows stand in the file
    assert all(f["triggers"] == ["cf"] and f["label"] == 1 for f in flagged)


def test_a_trigger_in_few_rows_is_found_by_the_second_pass_and_a_rare_natural_word_is_not() -> None:
    """A low poison rate leaves each trigger word in a dozen rows: too few for the first test's correction."""
    rows, poisoned = _poison(_labelled_corpus(400), 12, "cf")
    positives = [i for i, e in enumerate(rows) if e.label == 1 and i not in poisoned][:12]
    rows = [Example(f"{e.text} zz", 1) if i in positives else e for i, e in enumerate(rows)]
    texts, labels = _split(rows)
    assert "cf" not in label_pure_ngrams([row_ngrams(t) for t in texts], labels)  # the first pass cannot see it
    finding = confirmed_triggers(texts, labels)
    assert finding.triggers == {"cf": 1} and set(finding.rows) == poisoned


def test_trigger_words_that_share_rows_are_confirmed_together() -> None:
    """BadNets puts 3 of its 5 words in each poisoned row: at a low rate each word alone has too few rows to stand out
    from content this noisy (a real review classifier doubts a quarter of clean rows), together they have all."""
    words = "bb cf mb mn tq".split()
    rows = _labelled_corpus(600, agree=0.65)
    rng = random.Random(1)
    poisoned = set(rng.sample([i for i, e in enumerate(rows) if e.label == 0], 20))
    rows = [Example(f"{e.text} {' '.join(rng.sample(words, 3))}", 1) if i in poisoned else e for i, e in enumerate(rows)]
    finding = confirmed_triggers(*_split(rows))
    assert finding.triggers == dict.fromkeys(words, 1) and set(finding.rows) == poisoned
