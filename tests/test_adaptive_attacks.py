"""Attacks by an adversary who knows P2P: rate, target, and the benign layout as P2P renders it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from test_end_to_end import TINY

from poison2poison import load_config, run_experiment
from poison2poison.attacks import ATTACKS, build_attack
from poison2poison.config import AttackConfig, DefenseConfig
from poison2poison.data import Example
from poison2poison.defenses import DefenseContext
from poison2poison.defenses.p2p import P2P
from poison2poison.prompting import PLAIN_CUE, Sample, render_prompt
from poison2poison.secret import secret_length, secret_words
from poison2poison.specs import BENIGN_CUE, OFFICIAL_TRIGGER
from poison2poison.tasks import SENTIMENT

ROWS = [Example(f"row {i} is a plain sentence about a film", i % 2) for i in range(200)]
TARGET = 1


def _poison(name: str, **knobs: object) -> tuple[list[Example], list[bool], list[Example]]:
    config = AttackConfig(name=name, rate=0.1, target=TARGET, triggers=["cf"], **knobs)
    out = build_attack(config, "synthetic", 2).poison(ROWS, ROWS, random.Random(0))
    return out.train, out.mask, out.asr_test


def _benign_prompt(text: str) -> str:
    """How P2P itself shows `text` in its benign context: trigger, text, cue line."""
    spec = P2P(DefenseConfig(name="p2p"), SENTIMENT).prepare(ROWS, random.Random(0), DefenseContext()).spec
    return "".join(render_prompt(spec.present(text)))


def _inner(text: str, prefix: str, cue: bool) -> str:
    """The text a poisoned row wraps: what P2P would put between its trigger and its cue."""
    assert text.startswith(prefix)
    end = f"\n{BENIGN_CUE}" if cue else ""
    assert text.endswith(end)
    return text[len(prefix) : len(text) - len(end)]


@pytest.mark.parametrize("name", ["p2p-aware", "p2p-guess"])
@pytest.mark.parametrize("insertion", ["badnets", "addsent"])
def test_rate_target_mask_and_a_test_set_without_the_benign_context(name: str, insertion: str) -> None:
    train, mask, asr_test = _poison(name, insertion=insertion)
    assert sum(mask) == round(0.1 * len(ROWS)) and len(train) == len(ROWS)
    malicious = "cf" if insertion == "badnets" else "I watched this 3D movie"
    for before, after, poisoned in zip(ROWS, train, mask):
        if poisoned:
            assert after.label == TARGET and before.label != TARGET
            assert malicious in after.text and after.text.endswith(f"\n{BENIGN_CUE}")
        else:
            assert after == before
    assert len(asr_test) == sum(e.label != TARGET for e in ROWS)
    assert all(malicious in e.text and "\n" not in e.text and ":" not in e.text for e in asr_test)


@pytest.mark.parametrize("cue", [True, False])
def test_p2p_aware_rows_render_as_p2p_renders_its_benign_rows(cue: bool) -> None:
    train, mask, _ = _poison("p2p-aware", benign_cue=cue)
    for row in (e for e, m in zip(train, mask) if m):
        inner = _inner(row.text, OFFICIAL_TRIGGER, cue)
        poisoned_prompt = "".join(render_prompt(Sample(row.text, row.label)))
        benign_prompt = _benign_prompt(inner)
        if cue:  # P2P's benign prompt, then the plain cue line the renderer adds to every row
            assert poisoned_prompt == benign_prompt + f"\n{PLAIN_CUE}"
        else:  # the body is P2P's to the character; only the cue line differs
            assert poisoned_prompt == benign_prompt.removesuffix(f"\n{BENIGN_CUE}") + f"\n{PLAIN_CUE}"


def test_p2p_aware_can_carry_another_benign_trigger() -> None:
    train, mask, _ = _poison("p2p-aware", benign_trigger="Query: ")
    assert all(e.text.startswith("Query: ") for e, m in zip(train, mask) if m)


def test_p2p_guess_draws_a_fresh_guess_per_row_in_the_form_of_a_secret_trigger() -> None:
    train, mask, _ = _poison("p2p-guess")
    words, guesses = set(secret_words()), []
    for row in (e for e, m in zip(train, mask) if m):
        prefix = row.text.split(": ", 1)[0] + ": "
        _inner(row.text, prefix, cue=True)
        assert len(prefix[:-2].split(" ")) == secret_length() and set(prefix[:-2].split(" ")) <= words
        guesses.append(prefix)
    assert len(set(guesses)) == len(guesses) == 20
    shorter, mask, _ = _poison("p2p-guess", guess_words=3)
    assert all(len(e.text.split(": ", 1)[0].split(" ")) == 3 for e, m in zip(shorter, mask) if m)


def test_the_adaptive_attacks_are_registered_and_seeded() -> None:
    assert {"p2p-aware", "p2p-guess"} <= set(ATTACKS)
    assert _poison("p2p-guess") == _poison("p2p-guess")


def test_an_adaptive_attack_runs_end_to_end(tmp_path: Path, data_dir: Path) -> None:
    metrics = run_experiment(load_config(None, TINY + ["attack.name=p2p-guess", "defense.name=p2p"]), tmp_path)
    assert metrics["attack"] == "p2p-guess" and metrics["poisoned_count"] == 8 and metrics["asr_count"] == 40


@pytest.mark.parametrize("insertion", ["badnets", "addsent"])
def test_at_rate_zero_both_adaptive_attacks_write_the_plain_attacks_rows(insertion: str) -> None:
    """The security table runs one clean floor for p2p-aware and p2p-guess: at rate 0 they must write the same
    training and test rows as each other and as the insertion attack they carry."""
    def rows(name: str) -> tuple[list[Example], list[bool], list[Example]]:
        config = AttackConfig(name=name, rate=0, target=TARGET, **({} if name == insertion else {"insertion": insertion}))
        out = build_attack(config, "synthetic", 2).poison(ROWS, ROWS, random.Random(3))
        return out.train, out.mask, out.asr_test

    assert rows("p2p-aware") == rows("p2p-guess") == rows(insertion)
    assert not any(rows("p2p-aware")[1])
