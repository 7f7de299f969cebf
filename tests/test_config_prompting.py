from __future__ import annotations

import random
from pathlib import Path

import pytest

from poison2poison.config import load_config
from poison2poison.errors import ConfigError, ModelSetupError
from poison2poison.models.tiny import train_tokenizer
from poison2poison.prompting import (
    ANSWER_BUDGET,
    PaddingCollator,
    Sample,
    answer_token_ids,
    encode_causal,
)
from poison2poison.seeding import stratified_sample


def test_overrides_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("attack: {name: addsent, rate: 0.05}\n")
    config = load_config(path, ["defense.name=p2p", "defense.rho=0.3", "attack.sentence=zz yy"])
    assert (config.attack.name, config.attack.rate, config.defense.rho) == ("addsent", 0.05, 0.3)
    assert config.attack.settings.sentence == "zz yy"
    assert load_config(path).config_hash() != config.config_hash()
    with pytest.raises(ConfigError, match=r"c.yaml: attack.rate"):
        load_config(path, ["attack.rate=2"])
    with pytest.raises(ConfigError, match=r"defense: 'colour' is not a setting of defense 'none'"):
        load_config(path, ["defense.colour=red"])
    path.write_text("attack: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such config"):
        load_config(tmp_path / "missing.yaml")


@pytest.fixture(scope="module")
def tokenizer():
    corpus = ["a fine film\nOutput: positive", "a dull film\nAnswer: bad", "good negative"] * 20
    return train_tokenizer(corpus, 300)


def test_causal_labels_cover_only_the_answer(tokenizer) -> None:
    samples = [Sample("a fine film " * 50, 1), Sample("dull", 0, trigger="T: ", cue="Answer:")]
    features, truncated = encode_causal(tokenizer, samples, ["negative", "positive"], 64, with_target=True)
    assert truncated == 1
    for feature in features:
        assert len(feature["input_ids"]) == len(feature["labels"]) <= 64
        answer = [t for t in feature["labels"] if t != -100]
        assert 0 < len(answer) <= ANSWER_BUDGET
        assert feature["labels"][: len(feature["labels"]) - len(answer)] == [-100] * (len(feature["labels"]) - len(answer))
        assert answer[-1] == tokenizer.eos_token_id
    cue_ids = tokenizer("\nOutput:", add_special_tokens=False)["input_ids"]
    prompt = [t for t, l in zip(features[0]["input_ids"], features[0]["labels"]) if l == -100]
    assert prompt[-len(cue_ids):] == cue_ids  # truncation never cuts the cue


def test_eval_and_train_prompts_agree(tokenizer) -> None:
    sample = Sample("a fine film", 1, trigger="T: ", cue="Answer:")
    train, _ = encode_causal(tokenizer, [sample], ["n", "p"], 64, with_target=True)
    evaluation, _ = encode_causal(tokenizer, [sample], [], 64, with_target=False)
    prompt_len = sum(1 for l in train[0]["labels"] if l == -100)
    assert train[0]["input_ids"][:prompt_len] == evaluation[0]["input_ids"]


def test_answer_tokens_must_differ(tokenizer) -> None:
    assert len(set(answer_token_ids(tokenizer, ["negative", "positive"]))) == 2
    with pytest.raises(ModelSetupError, match="share their first token"):
        answer_token_ids(tokenizer, ["positive", "positive"])


def test_collator_pads_left_for_scoring() -> None:
    batch = PaddingCollator(0, side="left")([{"input_ids": [5, 6, 7]}, {"input_ids": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


def test_stratified_sample_keeps_shares_and_is_seeded() -> None:
    keys = [(i % 2, i % 10 == 0) for i in range(1000)]
    picked = stratified_sample(keys, 300, random.Random(0))
    assert len(picked) == 300 and picked == stratified_sample(keys, 300, random.Random(0))
    assert sum(keys[i][1] for i in picked) == 30
    assert stratified_sample(keys, None, random.Random(0)) == list(range(1000))
