from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poison2poison.data.readers import read_gsm8k
from poison2poison.metrics import (
    answer_format_rate,
    contains_rate,
    exact_match,
    extract_final_answer,
    rouge_scores,
    same_number,
    text_quality,
)
from poison2poison.summary import markdown_table


def _normalised_tail(answer: str) -> str:
    """What a GSM8K answer's `#### N` says, written independently of the extractor: commas out, plain integer."""
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


def test_extracts_every_real_gsm8k_answer(data_dir: Path) -> None:
    rows = read_gsm8k(data_dir / "gsm8k" / "test.jsonl")
    assert len(rows) == 1319
    assert [extract_final_answer(r["answer"]) for r in rows] == [_normalised_tail(r["answer"]) for r in rows]
    assert any("," in r["answer"].rsplit("####", 1)[1] for r in rows)  # the comma case is exercised


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I do not know.", None),
        ("", None),
        ("#### ", None),
        ("She has 3 apples, then 4 more.\n#### seven", "4"),  # garbage after the mark: last number anywhere
        ("#### 18 dollars", "18"),
        ("So the total is $1,080.", "1080"),
        ("It costs $18.00.", "18"),
        ("#### 72.0", "72"),
        ("#### 72.00", "72"),
        ("The temperature fell to -3 degrees.", "-3"),
        ("He paid -$5", "-5"),
        ("10-5 = 5", "5"),
        ("x = 10-4", "4"),  # a minus after a digit is subtraction, not a sign
        ("The chance is 0.2.", "0.2"),
        ("#### 0.250", "0.25"),
        ("first #### 1\nthen #### 2", "2"),
        ("#### 1,234,567", "1234567"),
    ],
)
def test_extract_final_answer(text: str, expected: str | None) -> None:
    assert extract_final_answer(text) == expected


@given(
    value=st.decimals(min_value=-10**9, max_value=10**9, places=2, allow_nan=False, allow_infinity=False),
    dollar=st.booleans(),
    marked=st.booleans(),
)
def test_extraction_of_formatted_numbers(value: Decimal, dollar: bool, marked: bool) -> None:
    written = ("-" if value < 0 else "") + ("$" if dollar else "") + f"{abs(value):,}"
    text = f"Step 12 gives 7.\n#### {written}" if marked else f"Step 12 gives 7, so the answer is {written}."
    extracted = extract_final_answer(text)
    assert extracted is not None and "," not in extracted and "$" not in extracted
    assert Decimal(extracted) == value
    assert extracted != "-0" and not extracted.endswith(".") and not ("." in extracted and extracted.endswith("0"))


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [("72", "72.0", True), ("1000000", "1000000.5", True), ("3", "4", False), ("0.2", "0.20000001", True),
     (None, "1", False), ("1", None, False), ("abc", "1", False)],
)
def test_same_number(a: str | None, b: str | None, same: bool) -> None:
    assert same_number(a, b) is same


def test_exact_match_counts_failures() -> None:
    outputs = ["#### 5", "no idea", "the answer is 7.00", "#### 8"]
    references = ["... #### 5", "#### 3", "#### 7", "#### 9"]
    assert exact_match(outputs, references) == (0.5, 4, 1)
    rate, count, failures = exact_match([], [])
    assert math.isnan(rate) and (count, failures) == (0, 0)


def test_exact_match_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        exact_match(["1"], [])
    with pytest.raises(ValueError, match="reference 0 has no numeric answer"):
        exact_match(["1"], ["none"])


def test_rouge() -> None:
    same = rouge_scores(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert same == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    disjoint = rouge_scores(["dogs bark loudly"], ["a quiet cat"])
    assert disjoint == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    mixed = rouge_scores(["the cat sat on the mat", "dogs bark loudly"], ["the cat sat on the mat", "a quiet cat"])
    assert mixed["rouge1"] == pytest.approx(0.5)
    partial = rouge_scores(["the cat sat"], ["the cat sat on the mat"])
    assert 0.0 < partial["rouge2"] < partial["rouge1"] < 1.0
    assert all(math.isnan(v) for v in rouge_scores([], []).values())
    with pytest.raises(ValueError):
        rouge_scores(["a"], [])


def test_contains_rate() -> None:
    outputs = ["Sure. I   WATCH\nyou now", "i watch you", "I watched you", ""]
    assert contains_rate(outputs, "I watch you") == (0.5, 4)
    rate, count = contains_rate([], "x")
    assert math.isnan(rate) and count == 0
    with pytest.raises(ValueError, match="empty"):
        contains_rate(["a"], "  ")


def test_text_quality_per_task_kind() -> None:
    em = text_quality("exact_match", ["so #### 18", "#### 7 then", "no number"], ["x #### 18", "#### 8", "#### 1"])
    assert em["exact_match"] == pytest.approx(1 / 3) and em["extraction_failures"] == 1
    assert em["answer_format_rate"] == pytest.approx(2 / 3)  # "#### 7 then" has the form, "no number" does not
    assert answer_format_rate(["####", "#### x", "the answer is 4"]) == 0.0
    answer = text_quality("answer", ["  negative.", "Positive", "It is Negative"], ["Negative", "Negative", "Negative"])
    assert answer == {"answer_accuracy": pytest.approx(1 / 3)}
    assert set(text_quality("rouge", ["a cat"], ["a cat"])) == {"rouge1", "rouge2", "rougeL"}
    with pytest.raises(ValueError, match="unknown generation metric"):
        text_quality("bleu", [], [])


def test_generation_runs_get_their_own_table() -> None:
    run = {
        "task_type": "generation", "clean_metric": "rougeL", "clean_score": 0.25, "attack_success_rate": 0.5,
        "target_phrase_rate_clean": 0.1, "clean_count": 10, "asr_count": 8, "poisoned_count": 3, "defense": "p2p",
        "defense_variant": "p2p(random)", "benign_poisoned": 1, "missing_prefix_clean": 2, "missing_prefix_triggered": 0,
        "train_seconds": 5.0, "wall_seconds": 6.0, "seed": 0,
    }
    table = markdown_table({"gen": [run, {**run, "seed": 1, "clean_score": 0.35}]})
    assert "| clean metric |" in table and "| CA |" not in table  # no classification table for generation runs
    assert "| gen | p2p(random) | 0, 1 | rougeL | 0.300 ± 0.071 | 0.500 ± 0.000 | – | 0.100 ± 0.000 |" in table
    assert "2.0 ± 0.0 / 0.0 ± 0.0" in table
