"""Fine-tuning through the Hugging Face Trainer: seeded, checkpointed, resumable, and launchable with
torchrun or `accelerate launch` for several processes."""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from safetensors.torch import load_file, save_file
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .config import ModelConfig, TrainConfig
from .distributed import is_main_process
from .errors import P2PError
from .io import atomic_write_json, read_json
from .models.loading import LoadedModel, build_model, load_saved_model, save_model
from .prompting import (
    PaddingCollator,
    Sample,
    TextSample,
    encode_causal,
    encode_encoder,
    encode_generation,
    encode_language_model,
    prefix_token_allowance,
    render_generation_prompt,
    render_prompt,
    render_target,
)
from .specs import TrainLoss

log = logging.getLogger(__name__)

ORDER_STATE_FILE = "epoch_order_rng.safetensors"
COMPLETE_FILE = "p2p_complete.json"
"""Written last into a checkpoint, once every other file of it is on disk: a checkpoint without it is not used."""


class RichProgress(TrainerCallback):
    """A rich progress bar over optimisation steps (on stderr: stdout carries results only), with the running loss, on
    the main process only."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.task: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.progress = Progress(
                TextColumn("fine-tune"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), transient=False, console=Console(stderr=True),
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, loss="")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if self.progress is not None and logs and "loss" in logs:
            self.progress.update(self.task, loss=f"loss {logs['loss']:.4f}")
            if state.global_step % max(1, args.save_steps // 4) == 0:  # every step's loss is logged; the log, less often
                log.info("step %d: loss %.4f", state.global_step, logs["loss"])

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class _FeatureList:
    """A list of token features the Trainer can index."""

    def __init__(self, features: list[dict[str, Any]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]


def encode_training_samples(loaded: LoadedModel, samples: Sequence[Sample], max_length: int) -> list[dict[str, Any]]:
    """Token features with targets; truncation is counted in the log, never silent."""
    if loaded.kind == "causal":
        features, truncated = encode_causal(
            loaded.tokenizer, samples, loaded.answer_words or [], max_length, True, loaded.frame
        )
    else:
        features, truncated = encode_encoder(loaded.tokenizer, samples, max_length, with_target=True)
    if truncated:
        log.info("%d of %d training prompts were truncated to %d tokens", truncated, len(features), max_length)
    return features


class _ReplayableLengthGroupedSampler(LengthGroupedSampler):
    """The Trainer's length-grouped order, drawn from the global RNG at each epoch's start exactly as the Trainer's own
    sampler draws it (so an uninterrupted run is unchanged), but remembering the RNG state it drew from.

    The Trainer's sampler gets no generator: a run resumed mid-epoch would draw that epoch's order again from whatever
    state the restart left, and train on other batches than the uninterrupted run. Replaying the saved state gives the
    same batches, so a resumed run ends with the same weights.
    """

    def __init__(self, batch_size: int, lengths: list[int], replay: tuple[int, torch.Tensor] | None) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.epoch = 0
        self.drawn_from: tuple[int, torch.Tensor] | None = None
        self._replay = replay

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):  # type: ignore[no-untyped-def]
        generator = None
        if self._replay is not None and self._replay[0] == self.epoch:
            state = self._replay[1]
            generator = torch.Generator()
            generator.set_state(state)
        else:
            state = torch.get_rng_state()
        self._replay = None
        self.drawn_from = (self.epoch, state)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


IGNORE = -100
"""The label of a token the loss skips (the prompt, the padding)."""


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """The positions whose logits predict a labelled token in some row of the batch (position p predicts token
    p + 1). A causal LM's loss needs the LM head there and nowhere else: with a 49k-token vocabulary the head over
    every prompt position costs about a quarter of a training step."""
    return (labels[:, 1:] != IGNORE).any(dim=0).nonzero().squeeze(1)


class _ResumableTrainer(Trainer):
    """A Trainer whose checkpoints count only once complete, and whose length-grouped runs resume mid-epoch on the
    same batches (see the sampler above): each checkpoint also keeps the RNG state the current epoch's order was drawn
    from. For a causal LM it computes the LM head only at the answer positions (`answer_positions`); the loss is the
    same.

    The Trainer writes a checkpoint folder in place, file by file, so a kill while it writes leaves a folder that
    looks like a checkpoint. Here every file is flushed to disk first and COMPLETE_FILE written last, atomically; it
    names the samples the run trains on (`run_key`) and the seconds of training up to it. Older checkpoints are
    removed only after that, so one complete checkpoint always exists once the first is written.
    """

    def __init__(
        self, *args: Any, order_replay: tuple[int, torch.Tensor] | None = None, answer_logits_only: bool = False,
        run_key: str = "", seconds_before: float = 0.0, **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._order_replay = order_replay
        self._sampler: _ReplayableLengthGroupedSampler | None = None
        self.answer_logits_only = answer_logits_only
        self.positions: torch.Tensor | None = None
        """The positions whose logits the current batch's forward pass computed."""
        self._run_key, self._seconds_before, self._started = run_key, seconds_before, time.perf_counter()

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if self.answer_logits_only and "labels" in inputs:
            self.positions = answer_positions(inputs["labels"])
            inputs = {**inputs, "logits_to_keep": self.positions}
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def training_seconds(self) -> float:
        """Seconds of training that led to the current weights, over every attempt that got a checkpoint in."""
        return self._seconds_before + time.perf_counter() - self._started

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()  # every process's files are written
        if is_main_process():
            folder = Path(self.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            _sync_folder(folder)
            atomic_write_json(folder / COMPLETE_FILE, {
                "run_key": self._run_key, "step": self.state.global_step,
                "train_seconds": round(self.training_seconds(), 2),
            })
            for other in _checkpoints(Path(self.args.output_dir)):
                if other != folder:
                    shutil.rmtree(other, ignore_errors=True)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            sampler = self._sampler = _ReplayableLengthGroupedSampler(sampler.batch_size, sampler.lengths,
                                                                      self._order_replay)
        return sampler

    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        if self._sampler is not None and self._sampler.drawn_from is not None and is_main_process():
            epoch, state = self._sampler.drawn_from
            save_file({"epoch": torch.tensor([epoch]), "state": state}, str(Path(output_dir) / ORDER_STATE_FILE))


def _sync_folder(folder: Path) -> None:
    """Flush every file of `folder` to disk, so that a checkpoint marked complete survives a power cut too."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def _checkpoints(checkpoint_dir: Path) -> list[Path]:
    """The checkpoint folders under `checkpoint_dir`, complete or not, newest step first."""
    if not checkpoint_dir.is_dir():
        return []
    found = [p for p in checkpoint_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
             if p.is_dir() and p.name.rsplit("-", 1)[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[-1]), reverse=True)


def _completion(folder: Path) -> dict[str, Any] | None:
    """A checkpoint's COMPLETE_FILE record; None where it has none (cut off mid-write) or one that does not read."""
    try:
        return read_json(folder / COMPLETE_FILE) if (folder / COMPLETE_FILE).is_file() else None
    except P2PError:
        return None


def _complete_checkpoint(checkpoint_dir: Path, run_key: str) -> tuple[Path | None, dict[str, Any]]:
    """The newest checkpoint that was written to the end for these samples, and its COMPLETE_FILE record. The others
    (cut off mid-write, of other samples, or older) are removed: the Trainer would write into them in place."""
    chosen: Path | None = None
    record: dict[str, Any] = {}
    for folder in _checkpoints(checkpoint_dir):
        saved = _completion(folder)
        if chosen is None and saved is not None and saved.get("run_key") == run_key:
            chosen, record = folder, saved
            continue
        if chosen is None:
            why = "of other training samples" if saved is not None else "incomplete (cut off while it was written)"
            log.warning("checkpoint %s is %s: not used", folder, why)
        if is_main_process():
            shutil.rmtree(folder, ignore_errors=True)
    return chosen, record


def _resumable_checkpoint(
    checkpoint_dir: Path, group_by_length: bool, run_key: str
) -> tuple[str | None, tuple[int, torch.Tensor] | None, dict[str, Any]]:
    """The newest complete checkpoint, the epoch order state saved with it, and its COMPLETE_FILE record. A
    length-grouped run's checkpoint written before that state was saved cannot resume on the same batches, so it is
    removed and the fine-tune starts over."""
    folder, record = _complete_checkpoint(checkpoint_dir, run_key)
    last = str(folder) if folder is not None else None
    if last is None or not group_by_length:
        return last, None, record
    order_file = Path(last) / ORDER_STATE_FILE
    if not order_file.is_file():
        log.warning("checkpoint %s has no saved batch order (written by an older version); a resumed run would "
                    "train on other batches than an uninterrupted one, so the fine-tune starts over", last)
        if is_main_process():
            shutil.rmtree(last)
        return None, None, {}
    saved = load_file(str(order_file))
    return last, (int(saved["epoch"][0]), saved["state"]), record


def fine_tune(
    loaded: LoadedModel, features: list[dict[str, Any]], config: TrainConfig, seed: int, checkpoint_dir: Path,
    loss: TrainLoss | None = None, run_key: str = "",
) -> dict[str, Any]:
    """Train in place; resumes from the newest complete checkpoint in `checkpoint_dir` that an earlier attempt left
    for the same samples (`run_key`, a hash of them).

    `loss` replaces cross-entropy (a defense's own loss, e.g. DeCE). The loss and seconds returned cover every step
    of the fine-tune, resumed or not: each step's loss is kept in the Trainer's log history (which a checkpoint
    carries), and each checkpoint records the seconds of training before it.
    """
    on_cpu = not (torch.cuda.is_available() or torch.backends.mps.is_available())
    if config.gradient_checkpointing and on_cpu:
        log.info("train.gradient_checkpointing is set on a CPU, where memory is rarely short: it costs time here")
    args = TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,
        seed=seed,
        data_seed=seed,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=None,  # _ResumableTrainer removes older checkpoints once a new one is complete
        logging_steps=1,
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        # Without an accelerator, say so: then torchrun / `accelerate launch` processes join one gloo DDP group.
        use_cpu=on_cpu,
        bf16=loaded.dtype == torch.bfloat16,
        fp16=loaded.dtype == torch.float16,
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        ddp_find_unused_parameters=False if config.gradient_checkpointing else None,
    )
    last, order_replay, resumed = _resumable_checkpoint(checkpoint_dir, config.group_by_length, run_key)
    trainer = _ResumableTrainer(
        model=loaded.model,
        args=args,
        train_dataset=_FeatureList(features),
        data_collator=PaddingCollator(loaded.tokenizer.pad_token_id, side="right"),
        callbacks=[RichProgress()],
        order_replay=order_replay,
        answer_logits_only=loaded.kind == "causal",
        run_key=run_key,
        seconds_before=float(resumed.get("train_seconds", 0.0)),
    )
    trainer.remove_callback(PrinterCallback)  # RichProgress reports instead of raw dicts on stdout
    if loss is not None or loaded.kind == "causal":
        trainer.compute_loss_func = _loss_on_outputs(loss or token_cross_entropy, trainer)
    if last:
        log.info("resuming fine-tuning from %s", last)
    output = trainer.train(resume_from_checkpoint=last)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "train_loss": sum(losses) / len(losses) if losses else float(output.training_loss),
        "train_steps": int(output.global_step),
        "train_seconds": round(trainer.training_seconds(), 2),
        "resumed_from_step": int(resumed.get("step", 0)),
        "resumed_seconds": float(resumed.get("train_seconds", 0.0)),
    }


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, epoch: int) -> torch.Tensor:
    """Mean cross-entropy over the labelled tokens, in float32, as the causal LMs' own loss computes it."""
    return torch.nn.functional.cross_entropy(logits.float(), labels, ignore_index=IGNORE)


def _loss_on_outputs(loss: TrainLoss, trainer: _ResumableTrainer) -> Callable[..., torch.Tensor]:
    """The Trainer's loss hook: flatten to (N, K) logits and (N,) labels (for a causal LM, the logits computed at
    `trainer.positions` against the tokens after them), and normalise as the Trainer's own loss is: by
    `num_items_in_batch`, the answer tokens over all accumulation steps (and, under torchrun, over all processes), so
    that gradient accumulation and DDP scale it correctly."""

    def compute(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs.logits
        if trainer.answer_logits_only:
            labels = labels[:, trainer.positions + 1]
        labels = labels.reshape(-1)
        kept = (labels != IGNORE).sum()
        if kept == 0:
            return logits.sum() * 0.0
        epoch = math.floor(trainer.state.epoch or 0) + 1
        total = loss(logits.reshape(-1, logits.shape[-1]), labels, epoch=epoch) * kept  # the batch mean, as a sum
        if num_items_in_batch is None:
            return total / (kept * trainer.current_gradient_accumulation_steps)
        return total / num_items_in_batch

    return compute


def fit_new_model(
    model_config: ModelConfig,
    train_config: TrainConfig,
    samples: Sequence[Sample],
    answer_words: Sequence[str],
    seed: int,
    checkpoint_dir: Path,
    loss: TrainLoss | None = None,
    run_key: str = "",
    output_twins: Sequence[int] | None = None,
) -> tuple[LoadedModel, dict[str, Any]]:
    """A fresh classifier, seeded (so its new head starts the same every run), fine-tuned on `samples`; see
    `build_model` for `output_twins`."""
    set_seed(seed)
    corpus = ["".join(render_prompt(replace(s, trigger=""))) for s in samples]  # a tokenizer never sees the trigger
    loaded = build_model(model_config, len(answer_words), answer_words, corpus, output_twins)
    features = encode_training_samples(loaded, samples, model_config.max_length)
    return loaded, _fine_tune_stats(loaded, features, train_config, seed, checkpoint_dir, loss, run_key)


def fit_new_generator(
    model_config: ModelConfig,
    train_config: TrainConfig,
    samples: Sequence[TextSample],
    template: str,
    seed: int,
    checkpoint_dir: Path,
    output_prefix: str = "",
    run_key: str = "",
) -> tuple[LoadedModel, dict[str, Any]]:
    """A fresh causal LM fine-tuned to write each sample's target after its prompt (loss on the target only).

    Benign targets may exceed `max_target_tokens` by the safe `output_prefix` they carry. Prompts and targets cut to
    fit are counted in the log and in the returned stats.
    """
    set_seed(seed)
    corpus = ["".join(render_generation_prompt(template, replace(s, trigger=""))) + render_target(s.target)
              for s in samples]  # a tokenizer never sees the trigger
    loaded = build_model(model_config, 0, None, corpus)
    features, cut = encode_generation(
        loaded.tokenizer, samples, template, model_config.max_length, model_config.max_target_tokens, True,
        prefix_token_allowance(loaded.tokenizer, output_prefix, loaded.frame), loaded.frame,
    )
    if any(cut.values()):
        log.info("of %d training rows, %d prompts and %d targets were cut to fit model.max_length %d and "
                 "model.max_target_tokens %d", len(features), cut["prompts"], cut["targets"],
                 model_config.max_length, model_config.max_target_tokens)
    stats = _fine_tune_stats(loaded, features, train_config, seed, checkpoint_dir, run_key=run_key)
    stats.update({"prompts_cut": cut["prompts"], "targets_cut": cut["targets"]})
    return loaded, stats


def fit_language_model(
    model_config: ModelConfig, train_config: TrainConfig | None, texts: Sequence[str], seed: int, checkpoint_dir: Path
) -> LoadedModel:
    """A causal LM (a fresh `tiny` one, or a pretrained one) trained to continue the texts; with no `train_config`
    a pretrained LM is kept as it is."""
    set_seed(seed)
    loaded = build_model(model_config, 0, None, texts)
    if train_config is not None:
        features = encode_language_model(loaded.tokenizer, texts, model_config.max_length)
        _fine_tune_stats(loaded, features, train_config, seed, checkpoint_dir)
    return loaded


def fit_throwaway_model(
    model_config: ModelConfig, train_config: TrainConfig, samples: Sequence[Sample], answer_words: Sequence[str],
    seed: int,
) -> LoadedModel:
    """A classifier trained only to look at the data with (screening, BKI, CUBE); nothing of it is kept."""
    with tempfile.TemporaryDirectory(prefix="p2p-reference-") as tmp:
        loaded, _ = fit_new_model(model_config, train_config, samples, answer_words, seed, Path(tmp))
    return loaded


def _fine_tune_stats(
    loaded: LoadedModel, features: list[dict[str, Any]], config: TrainConfig, seed: int, checkpoint_dir: Path,
    loss: TrainLoss | None = None, run_key: str = "",
) -> dict[str, Any]:
    stats = fine_tune(loaded, features, config, seed, checkpoint_dir, loss, run_key)
    stats["train_rows"] = len(features)
    return stats


def trained_model(
    run_dir: Path, run_key: str, fit: Callable[[Path, str], tuple[LoadedModel, dict[str, Any]]]
) -> tuple[LoadedModel, dict[str, Any]]:
    """The model a run trains with `fit(checkpoint_dir, run_key)`, saved in RUN_DIR/model; or the one an earlier
    attempt of the run saved from the same samples (`run_key`, a hash of them: the benign trigger included, so a
    model is never served with a trigger it was not trained with).

    train.json, written after the model, marks it complete; checkpoints are removed after that.
    """
    model_dir, stats_path = run_dir / "model", run_dir / "train.json"
    saved = read_json(stats_path) if (model_dir / "model_meta.json").is_file() and stats_path.is_file() else None
    if saved is not None and saved.get("run_key") == run_key:
        log.info("model already trained; loading %s", model_dir)
        return load_saved_model(model_dir), {k: v for k, v in saved.items() if k != "run_key"}
    if saved is not None:
        log.warning("%s was trained on other samples than this run's; training again", model_dir)
    loaded, stats = fit(run_dir / "checkpoints", run_key)
    if is_main_process():
        save_model(loaded, model_dir)
        atomic_write_json(stats_path, {**stats, "run_key": run_key})
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return loaded, stats
