"""Generation core: P2P's safe prefix (apply and strip), the benign subset of text pairs, target-only loss masks, and
greedy generation on a tiny causal LM."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poison2poison.config import DefenseConfig, ModelConfig
from poison2poison.data.generation import READERS
from poison2poison.data.types import TextPair
from poison2poison.defenses import build_generation_defense
from poison2poison.errors import ConfigError, ModelSetupError
from poison2poison.inference import generate_texts
from poison2poison.models.loading import build_model
from poison2poison.prompting import TextSample, encode_generation, prefix_token_allowance
from poison2poison.specs import OFFICIAL_TRIGGER, GenerationSpec
from poison2poison.tasks import GENERATION_TASKS

TEMPLATE = "Question: {source}"
pairs_strategy = st.lists(
    st.builds(TextPair, st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20)), min_size=1, max_size=60
)


@settings(max_examples=40, deadline=None)
@given(pairs=pairs_strategy, rho=st.floats(0.05, 1.0), seed=st.integers(0, 99), mode=st.sampled_from(["replace", "append"]))
def test_p2p_generation_puts_the_prefix_on_exactly_the_benign_rows(
    pairs: list[TextPair], rho: float, seed: int, mode: str
) -> None:
    config = DefenseConfig(name="p2p", rho=rho, mode=mode)
    prepared = build_generation_defense(config).prepare(pairs, random.Random(seed))
    benign = [s for s in prepared.samples if s.trigger]
    assert len(benign) == len(prepared.benign_rows) == round(rho * len(pairs))
    assert sorted((s.source, s.target) for s in benign) == sorted(
        (pairs[i].source, config.output_prefix + pairs[i].target) for i in prepared.benign_rows
    )
    assert all(s.trigger == OFFICIAL_TRIGGER for s in benign)
    plain = [s for s in prepared.samples if not s.trigger]
    assert len(plain) == len(pairs) - (0 if mode == "append" else len(benign))
    assert not any(s.target.startswith(config.output_prefix) and not p.target.startswith(config.output_prefix)
                   for s, p in zip(plain, pairs) if s.source == p.source)
    again = build_generation_defense(config).prepare(pairs, random.Random(seed))
    assert again.samples == prepared.samples  # same seed, same data


@given(text=st.text(max_size=40))
def test_stripping_undoes_the_prefix_and_reports_a_missing_one(text: str) -> None:
    spec = GenerationSpec("p2p", OFFICIAL_TRIGGER, "Answer:", "Safe answer: ")
    stripped, had = spec.strip("Safe answer: " + text)
    assert had and stripped == text.lstrip()
    answer = "The answer is 4"
    bare, had_bare = spec.strip(answer)
    assert bare == answer and not had_bare


def test_generation_p2p_refuses_what_it_cannot_do() -> None:
    pairs = [TextPair("a", "b")] * 10
    with pytest.raises(ConfigError, match="oracle"):
        build_generation_defense(DefenseConfig(name="p2p", source="oracle")).prepare(pairs, random.Random(0))
    with pytest.raises(ConfigError, match="not available"):
        build_generation_defense(DefenseConfig(name="cube")).prepare(pairs, random.Random(0))
    oracle_p2p = build_generation_defense(DefenseConfig(name="p2p", source="oracle", rho=0.2))
    oracle = oracle_p2p.prepare(pairs, random.Random(0), [3, 4])
    assert oracle.benign_rows == [3, 4]
    for option in ({"drop_suspicious": 0.1}, {"oversample": 3}, {"trusted_size": 5}, {"screen": ["lexical"]}):
        with pytest.raises(ConfigError, match=f"unset defense.{next(iter(option))}"):
            build_generation_defense(DefenseConfig(name="p2p", **option)).prepare(pairs, random.Random(0))
    for prefix in ("Safe answer:", "Safe answer:\n"):
        with pytest.raises(ValueError, match="must end with a space"):
            DefenseConfig(output_prefix=prefix)


def test_every_task_file_names_a_known_reader_or_its_files() -> None:
    assert set(GENERATION_TASKS) == {"gsm8k", "samsum", "sst2-instruct", "xsum"}
    for task in GENERATION_TASKS.values():
        assert task.reader in READERS or set(task.files) == {"train", "test"}


def _tiny(corpus: list[str]):
    config = ModelConfig(name="tiny", tiny_hidden_size=32, tiny_layers=1, tiny_vocab_size=400, max_length=64)
    return config, build_model(config, 0, None, corpus)


def test_generation_loss_covers_the_target_only_and_keeps_the_cue() -> None:
    _, loaded = _tiny(["Question: what is two plus two\nOutput: 4", "a longer source " * 20])
    tok = loaded.tokenizer
    samples = [TextSample("what is two plus two", "4"), TextSample("a longer source " * 20, "x " * 200)]
    features, cut = encode_generation(tok, samples, TEMPLATE, 64, 16, with_target=True)
    first = features[0]
    target = tok(" 4", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert [t for t in first["labels"] if t != -100] == target
    assert first["input_ids"][-len(target):] == target
    assert cut == {"prompts": 1, "targets": 1}
    assert all(len(f["input_ids"]) <= 64 for f in features)
    cue = tok("\nOutput:", add_special_tokens=False)["input_ids"]
    long = features[1]
    prompt_len = long["labels"].count(-100)
    assert long["input_ids"][prompt_len - len(cue) : prompt_len] == cue  # the cue survives truncation


@pytest.mark.parametrize("prefix", ["Safe answer: ", "SAFE: ", "ok then,  "])
def test_the_safe_prefix_never_eats_the_answer_budget(prefix: str) -> None:
    _, loaded = _tiny(["Question: review one\nOutput: Negative", f"Question: review two\nAnswer: {prefix}Positive"])
    tok = loaded.tokenizer
    answer = tok(" Negative", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    benign = TextSample("review one", prefix + "Negative", trigger="T: ", cue="Answer:")
    plain = TextSample("review one", "Negative")
    allowance = prefix_token_allowance(tok, prefix)
    features, cut = encode_generation(tok, [benign, plain], TEMPLATE, 64, len(answer), True, allowance)
    assert cut["targets"] == 0  # the benign target keeps its EOS although the prefix made it longer
    assert features[0]["labels"][-1] == features[1]["labels"][-1] == tok.eos_token_id
    assert allowance >= len(tok(f" {prefix}Negative", add_special_tokens=False)["input_ids"]) - len(answer) + 1
    assert prefix_token_allowance(tok, "") == 0


def test_tiny_generation_is_greedy_batched_and_deterministic() -> None:
    config, loaded = _tiny(["Question: hello there\nOutput: general kenobi"] * 5)
    samples = [TextSample(f"hello {i}", "") for i in range(5)]
    first = generate_texts(loaded, samples, TEMPLATE, config.max_length, 8, batch_size=2)
    second = generate_texts(loaded, samples, TEMPLATE, config.max_length, 8, batch_size=5)
    assert len(first) == 5 and first == second  # greedy; left padding does not change the outputs
    with pytest.raises(ModelSetupError, match="below"):
        generate_texts(loaded, samples, TEMPLATE, config.max_length, config.max_length)


def test_an_encoder_cannot_be_a_generator(data_dir) -> None:
    with pytest.raises(ModelSetupError, match="causal"):
        build_model(ModelConfig(name="minilm"), 0, None, [])
