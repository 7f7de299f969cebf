"""What P2P fine-tuning costs on a GPU, checked through the project's own training code.

1. A 7B-class Llama built from its config with random weights, directly on the GPU in bfloat16 (nothing to download):
   a few LoRA steps of P2P training (answer-only loss, the benign context in a fifth of the rows) at sequence length
   512, without and with activation checkpointing: peak GPU memory and tokens per second.
2. 4-bit QLoRA on a smaller Llama, where bitsandbytes imports; otherwise it says it was skipped.
3. The tiny end-to-end P2P run (`p2p run` on SST-2 with the `tiny` model), on the GPU.

Without CUDA it runs what a CPU can (a 60M-parameter stand-in for step 1, and step 3) and says what it skipped.

    python benchmarks/gpu_check.py            # all steps; about 4 minutes on one H100
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PrinterCallback, TrainingArguments

from poison2poison.config import ModelConfig
from poison2poison.models.loading import LoadedModel, _apply_lora, build_model
from poison2poison.models.tiny import train_tokenizer
from poison2poison.prompting import PaddingCollator
from poison2poison.training import _FeatureList, _loss_on_outputs, _ResumableTrainer, token_cross_entropy

LLAMA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=32, vocab_size=32000)
CPU_STAND_IN = dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                    num_key_value_heads=8, vocab_size=32000)
LLAMA_1B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                num_key_value_heads=4, vocab_size=32000)
ANSWER_TOKENS = 2


def say(what: str) -> None:
    print(what, flush=True)


def random_llama(shape: dict, device: str, dtype: torch.dtype) -> LlamaForCausalLM:
    """A Llama of the given shape with random weights, made in place on the device (no float32 copy first)."""
    config = LlamaConfig(**shape, max_position_embeddings=4096, tie_word_embeddings=False)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)


def p2p_features(rows: int, length: int, vocab: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """Prompts of `length` tokens whose last ANSWER_TOKENS are the answer (the only labelled tokens), as P2P trains."""
    generator = torch.Generator().manual_seed(seed)
    features = []
    for _ in range(rows):
        ids = torch.randint(3, vocab, (length,), generator=generator).tolist()
        features.append({"input_ids": ids, "labels": [-100] * (length - ANSWER_TOKENS) + ids[-ANSWER_TOKENS:]})
    return features


def lora_steps(loaded: LoadedModel, steps: int, batch: int, length: int, checkpointing: bool) -> dict:
    """Seconds, tokens per second and peak memory of `steps` LoRA steps through the project's Trainer and loss."""
    features = p2p_features(steps * batch, length, loaded.model.config.vocab_size)
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch, learning_rate=1e-4,
            save_strategy="no", report_to=[], disable_tqdm=True, remove_unused_columns=False, use_cpu=not cuda,
            bf16=loaded.dtype == torch.bfloat16, activation_checkpointing=checkpointing,
            activation_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        )
        trainer = _ResumableTrainer(model=loaded.model, args=args, train_dataset=_FeatureList(features),
                                    data_collator=PaddingCollator(0), answer_logits_only=True)
        trainer.remove_callback(PrinterCallback)
        trainer.compute_loss_func = _loss_on_outputs(token_cross_entropy, trainer)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        output = trainer.train()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    if checkpointing:
        loaded.model.gradient_checkpointing_disable()
    return {"steps": steps, "batch": batch, "seq_len": length, "activation_checkpointing": checkpointing,
            "seconds": round(seconds, 2), "tokens_per_second": round(steps * batch * length / seconds, 1),
            "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "train_loss": round(float(output.training_loss), 4)}


def check_lora(args: argparse.Namespace, device: str) -> list[dict]:
    shape, name = (LLAMA_7B, "Llama 7B shape") if device == "cuda" else (CPU_STAND_IN, "CPU stand-in (60M)")
    if device != "cuda":
        say("step 1: no CUDA device; the 7B check is skipped, and a 60M stand-in runs the same code on the CPU")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    started = time.perf_counter()
    model = random_llama(shape, device, dtype)
    parameters = sum(p.numel() for p in model.parameters())
    say(f"step 1: {name}, {parameters / 1e9:.2f}B parameters built on {device} in {dtype} in "
        f"{time.perf_counter() - started:.1f} s")
    config = ModelConfig(name="random", finetune="lora", lora_r=16, lora_alpha=32)
    loaded = LoadedModel(_apply_lora(model, config, "causal"), None, "causal", dtype=dtype)
    steps, length = (args.steps, args.seq_len) if device == "cuda" else (2, 128)
    lora_steps(loaded, 1, args.batch, length, False)  # warm-up: kernels and allocator set-up are no variant's cost
    results = []
    for checkpointing in (False, True):
        result = lora_steps(loaded, steps, args.batch, length, checkpointing)
        result["model"] = name
        results.append(result)
        say("  " + json.dumps(result))
    del loaded, model
    if device == "cuda":
        torch.cuda.empty_cache()
    return results


def check_qlora(args: argparse.Namespace) -> dict | None:
    if not torch.cuda.is_available():
        say("step 2: QLoRA skipped: no CUDA device")
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        say("step 2: QLoRA skipped: bitsandbytes is not installed on this machine")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        random_llama(LLAMA_1B, "cuda", torch.bfloat16).save_pretrained(tmp)
        train_tokenizer(["a small corpus for a tokenizer the random model is saved with"] * 4, 300).save_pretrained(tmp)
        torch.cuda.empty_cache()
        config = ModelConfig(name=tmp, finetune="lora", quantization="4bit", dtype="bfloat16")
        loaded = build_model(config, 0, None, [])  # the project's own QLoRA path: bitsandbytes 4-bit + k-bit prep
        result = lora_steps(loaded, args.steps, args.batch, args.seq_len, False)
    result["model"] = "Llama 1.1B shape, 4-bit QLoRA"
    say("  " + json.dumps(result))
    return result


def check_tiny_run(device: str) -> dict:
    from poison2poison import load_config, run_experiment

    overrides = ["data.train_size=400", "data.test_size=200", "train.epochs=2", "model.max_length=64",
                 "attack.rate=0.05", "defense.name=p2p"]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        metrics = run_experiment(load_config(None, overrides), Path(tmp) / "run")
    keep = ("clean_accuracy", "clean_count", "attack_success_rate", "asr_count", "train_seconds", "train_steps")
    result = {k: metrics[k] for k in keep} | {"device": device, "wall_seconds": round(time.perf_counter() - started, 1)}
    say("step 3: tiny end-to-end P2P run: " + json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--out", type=Path, default=None, help="write every figure as JSON here")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    card = torch.cuda.get_device_name(0) if device == "cuda" else "no CUDA device"
    say(f"torch {torch.__version__}, device: {card}")
    report = {"device": card, "lora": check_lora(args, device), "qlora": check_qlora(args),
              "tiny_run": check_tiny_run(device)}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
