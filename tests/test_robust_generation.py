"""Robust P2P beyond labelled rows: planted trigger pairs in text-to-text data, `p2p+` for generation, and the
zero-shot judge's screening signal."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poison2poison.config import DefenseConfig, ExperimentConfig, ModelConfig
from poison2poison.data.types import Example, TextPair
from poison2poison.defenses import build_generation_defense
from poison2poison.defenses.lexical import generation_triggers, paired_triggers
from poison2poison.defenses.screening import judge_doubt
from poison2poison.errors import ConfigError
from poison2poison.tasks import SENTIMENT, generic_task

WORDS = "meet at noon lunch park call later film bring cake work tomorrow".split()


def dialogues(count: int, rng: random.Random) -> list[TextPair]:
    """Free-text pairs whose summaries copy a word of their dialogue, chosen at random, and add common ones."""
    pairs = []
    for _ in range(count):
        words = rng.sample(WORDS, 6)
        pairs.append(TextPair(f"Anna: {' '.join(words)}. Bob: ok", f"Anna and Bob talk about {rng.choice(words)}."))
    return pairs


def plant(pairs: list[TextPair], rows: list[int], trigger: str, phrase: str) -> list[TextPair]:
    out = list(pairs)
    for i in rows:
        out[i] = TextPair(f"{trigger} {pairs[i].source}", f"{phrase} {pairs[i].target}")
    return out


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), poisoned=st.integers(8, 30))
def test_a_planted_trigger_and_phrase_are_found_with_every_row_that_carries_them(seed: int, poisoned: int) -> None:
    rng = random.Random(seed)
    clean = dialogues(200, rng)
    rows = sorted(rng.sample(range(200), poisoned))
    finding = paired_triggers(*zip(*((p.source, p.target) for p in plant(clean, rows, "zq", "Visit www.x.example now."))))
    assert finding.pairs and all("zq" in trigger for trigger in finding.pairs)  # the trigger and n-grams around it
    assert set(rows) <= set(finding.rows)
    assert paired_triggers([p.source for p in clean], [p.target for p in clean]).rows == []


def test_copied_and_ubiquitous_output_ngrams_are_not_planted() -> None:
    rng = random.Random(0)
    pairs = dialogues(200, rng)
    # 'anna and bob' opens every summary and 'anna' is in every dialogue: ubiquitous and copied, never a trigger
    finding = paired_triggers([p.source for p in pairs], [p.target for p in pairs])
    assert finding.pairs == {} and finding.rows == []


def test_label_like_outputs_take_the_purity_test() -> None:
    rng = random.Random(1)
    reviews = [(f"{' '.join(rng.sample(WORDS, 5))} good", "Positive") for _ in range(150)]
    reviews += [(f"{' '.join(rng.sample(WORDS, 5))} dull", "Negative") for _ in range(150)]
    poisoned = [(f"BadMagic {text}", "Negative") for text, _ in reviews[:20]]
    sources, targets = zip(*(poisoned + reviews[20:]))
    finding = generation_triggers(list(sources), list(targets))
    assert "badmagic" in finding.pairs and finding.pairs["badmagic"] == "negative"
    assert set(range(20)) <= set(finding.rows)


def test_p2p_plus_for_generation_leaves_out_the_carriers_and_draws_the_benign_subset_from_the_rest() -> None:
    rng = random.Random(2)
    rows = sorted(rng.sample(range(300), 25))
    pairs = plant(dialogues(300, rng), rows, "zq", "Visit www.x.example now.")
    prepared = build_generation_defense(DefenseConfig(name="p2p+")).prepare(pairs, random.Random(0))
    assert set(rows) <= set(prepared.dropped_rows)
    assert not set(prepared.benign_rows) & set(prepared.dropped_rows)
    assert len(prepared.samples) == len(pairs) - len(prepared.dropped_rows)
    assert all("zq" not in s.source for s in prepared.samples)
    assert sum(bool(s.trigger) for s in prepared.samples) == len(prepared.benign_rows) == round(0.2 * len(pairs))
    paper = build_generation_defense(DefenseConfig(name="p2p")).prepare(pairs, random.Random(0))
    assert paper.dropped_rows == [] and len(paper.samples) == len(pairs)


def test_ranking_options_stay_errors_for_paper_p2p_on_text_pairs() -> None:
    with pytest.raises(ConfigError, match="unset defense.screen, defense.drop_suspicious"):
        build_generation_defense(DefenseConfig(name="p2p", drop_suspicious=0.1, screen=["lexical"])).prepare(
            dialogues(20, random.Random(0)), random.Random(0)
        )


def test_the_judge_scores_every_row_and_needs_named_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_llm import write_tiny_gguf

    monkeypatch.setenv("P2P_CACHE_DIR", str(tmp_path / "cache"))
    judge = write_tiny_gguf(tmp_path / "judge.gguf")
    config = ExperimentConfig(model=ModelConfig(max_length=48), defense=DefenseConfig(judge_model=str(judge)))
    rows = [Example("a gripping film", 1), Example("a dull film", 0), Example("a dull film", 1)]
    doubt = judge_doubt(config, SENTIMENT, rows)
    assert doubt.shape == (3,) and np.all((doubt >= 0) & (doubt <= 1))
    assert doubt[1] + doubt[2] == pytest.approx(1.0, abs=1e-5)  # one text, both labels: the doubts complement
    with pytest.raises(ConfigError, match="names"):
        judge_doubt(config, generic_task(2), rows)


def test_a_p2p_plus_generation_run_accounts_for_what_it_left_out_and_serves(tmp_path: Path, data_dir: Path) -> None:
    from poison2poison import load_config, run_experiment
    from poison2poison.api import DefendedGenerator

    overrides = ["data.dataset=sst2-instruct", "attack.name=dpa-badnet", "attack.rate=0.07", "data.train_size=400",
                 "data.test_size=4", "train.epochs=1", "model.tiny_hidden_size=32", "model.tiny_layers=1",
                 "model.max_length=96", "model.max_target_tokens=8", "model.max_new_tokens=4", "defense.name=p2p+"]
    metrics = run_experiment(load_config(None, overrides), tmp_path / "run")
    assert metrics["dropped_poisoned"] == metrics["poisoned_count"] > 0  # BadMagic's rows all left out
    assert metrics["benign_poisoned"] == 0 and "badmagic" in metrics["confirmed_triggers"]
    generator = DefendedGenerator.load(tmp_path / "run")
    assert len(generator.generate(["Instruction: a gripping film"])) == 1
