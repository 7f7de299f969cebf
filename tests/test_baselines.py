"""Baseline defenses: each one's data and decision logic on tiny inputs (effectiveness belongs in the benchmark)."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from poison2poison.config import DefenseConfig
from poison2poison.data import Example
from poison2poison.defenses import DefenseContext, build_defense
from poison2poison.defenses.pdb import shifted_label, unshift_projection
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
