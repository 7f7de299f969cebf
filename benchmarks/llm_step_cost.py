"""Seconds per fine-tuning step of a causal LM on SST-2 prompts, with the LM head over every position (the
Trainer's own loss) against the head at the answer positions only (what `p2p run` does), and with and without
activation checkpointing. The variants alternate in rounds, on one model, in one process, so that the machine's noise
falls on all of them alike.

    P2P_DATA_DIR=../shared/data python benchmarks/llm_step_cost.py --model smollm2 --steps 8 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from transformers import PrinterCallback, TrainingArguments

from poison2poison.config import ModelConfig
from poison2poison.data.catalog import load_split
from poison2poison.models.loading import build_model
from poison2poison.prompting import PaddingCollator, Sample
from poison2poison.specs import OFFICIAL_TRIGGER
from poison2poison.tasks import SENTIMENT
from poison2poison.training import (
    _FeatureList,
    _loss_on_outputs,
    _ResumableTrainer,
    encode_training_samples,
    token_cross_entropy,
)

VARIANTS = {
    "head at every position (before)": {"answer_logits_only": False, "checkpointing": False},
    "head at answer positions (after)": {"answer_logits_only": True, "checkpointing": False},
    "answer positions + activation checkpointing": {"answer_logits_only": True, "checkpointing": True},
}


def seconds_per_step(loaded, features, steps: int, batch: int, answer_logits_only: bool, checkpointing: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch, learning_rate=2e-4,
            save_strategy="no", report_to=[], disable_tqdm=True, remove_unused_columns=False, use_cpu=True,
            train_sampling_strategy="group_by_length", activation_checkpointing=checkpointing,
            activation_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        )
        trainer = _ResumableTrainer(
            model=loaded.model, args=args, train_dataset=_FeatureList(features),
            data_collator=PaddingCollator(loaded.tokenizer.pad_token_id), answer_logits_only=answer_logits_only,
        )
        trainer.remove_callback(PrinterCallback)
        if answer_logits_only:
            trainer.compute_loss_func = _loss_on_outputs(token_cross_entropy, trainer)
        started = time.perf_counter()
        trainer.train()
        seconds = (time.perf_counter() - started) / steps
    if checkpointing:
        loaded.model.gradient_checkpointing_disable()  # the Trainer turns it on and leaves it on
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--lora-targets", default="attention", choices=["attention", "all-linear"])
    parser.add_argument("--system-prompt", default=None, help="the chat system message (default: the template's)")
    opts = parser.parse_args()
    rows = load_split("sst2", "train")[: opts.rows]
    # A P2P training set: a fifth of the rows in the benign context, as the benchmark runs train on.
    samples = [Sample(e.text, e.label + 2, OFFICIAL_TRIGGER, "Answer:") if i % 5 == 0 else Sample(e.text, e.label)
               for i, e in enumerate(rows)]
    config = ModelConfig(name=opts.model, finetune="lora", lora_r=16, lora_alpha=32, max_length=opts.max_length,
                         lora_targets=opts.lora_targets, system_prompt=opts.system_prompt)
    words = SENTIMENT.answer_words(4)
    loaded = build_model(config, len(words), words, [])
    features = encode_training_samples(loaded, samples, opts.max_length)
    tokens = statistics.mean(len(f["input_ids"]) for f in features)
    print(f"model {opts.model} ({'chat template' if loaded.frame else 'plain prompts'}), LoRA r=16 on "
          f"{opts.lora_targets}, system prompt {'of the template' if opts.system_prompt is None else repr(opts.system_prompt)}, batch "
          f"{opts.batch}, {len(features)} rows of {tokens:.0f} tokens on average, {opts.steps} steps per timing")
    seconds_per_step(loaded, features, 2, opts.batch, True, False)  # warm-up: one-off set-up is no variant's cost
    timings: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(opts.rounds):
        for name, variant in VARIANTS.items():
            timings[name].append(seconds_per_step(loaded, features, opts.steps, opts.batch, **variant))
            print(f"round {round_ + 1}: {name}: {timings[name][-1]:.2f} s/step", flush=True)
    before = statistics.median(timings[next(iter(VARIANTS))])
    print("\n| variant | s/step (median of rounds) | rounds | ratio to before |\n|---|---|---|---|")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {', '.join(f'{v:.2f}' for v in values)} | {median / before:.2f} |")


if __name__ == "__main__":
    main()
