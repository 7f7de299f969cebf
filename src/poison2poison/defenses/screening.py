"""Screening (ours, beyond the paper): score how suspicious each untrusted training row is, without the poison mask.

Robust P2P draws its benign subset from the least suspicious rows and may leave the most suspicious out of
training. Dirty-label poison shows in one of two ways, so there are two signals:

- `lexical`: n-grams whose rows carry one label far more often than chance. A word or sentence trigger is such an
  n-gram (every poisoned row has the target label); so are strong sentiment words, which is why the score is a
  rank, not a verdict. Costs no training.
- `reference`: a short fine-tune on the rows as given. Where the trigger is not yet learned, a poisoned row's content
  argues for another label, and the reference gives its own label low confidence.
- `judge`: a pretrained instruct LLM (`defense.judge_model`) asked zero-shot which label fits each row. It never
  trains on the untrusted rows, so no poison can teach it the trigger, whatever form the trigger takes (a paraphrase,
  a style); a dirty-label row's content argues against its label, and the judge says so. It needs labels with names.

Each signal becomes a percentile rank within the row's label; a row's suspicion is the largest of its ranks.
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np
from scipy.special import softmax
from scipy.stats import rankdata

from ..config import ExperimentConfig, ModelConfig
from ..data.types import Example
from ..errors import ConfigError
from ..inference import score_samples
from ..models import build_model
from ..prompting import Sample
from ..tasks import ClassificationTask
from ..training import fit_throwaway_model
from .lexical import confirmed_triggers, lexical_scores

log = logging.getLogger(__name__)

SCREENING_VERSION = 2  # part of a cached screening's key: bump it when the scores change


def percentile_within_label(scores: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Rank of each score among the rows of its label, scaled to [0, 1] (ties share their mean rank)."""
    out = np.zeros(len(scores))
    labels_arr = np.asarray(labels)
    for label in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == label)
        if len(idx) == 1:
            out[idx] = 0.5
            continue
        ranks = rankdata(scores[idx]) - 1  # ties share their mean rank: equal evidence, equal suspicion
        out[idx] = ranks / (len(idx) - 1)
    return out


def combine_suspicion(signals: dict[str, np.ndarray], labels: Sequence[int]) -> np.ndarray:
    """A row is as suspicious as its most suspicious signal, each signal ranked within the row's label."""
    if not signals:
        raise ValueError("no screening signal to combine")
    ranked = [percentile_within_label(np.asarray(s, dtype=float), labels) for s in signals.values()]
    return np.max(np.stack(ranked), axis=0)


def reference_config(config: ExperimentConfig) -> ExperimentConfig:
    """The run's config with the screening reference's model and fine-tune (`screen_model`, `screen_epochs`,
    `screen_learning_rate`) in place of its own."""
    screen = config.defense
    return config.model_copy(update={
        "model": config.model.model_copy(update={"name": screen.screen_model or config.model.name}),
        "train": config.train.model_copy(update={
            "epochs": screen.screen_epochs, "learning_rate": screen.screen_learning_rate or config.train.learning_rate,
        }),
    })


def reference_doubt(config: ExperimentConfig, task: ClassificationTask, train: Sequence[Example]) -> np.ndarray:
    """1 - the confidence a short reference fine-tune gives each row's own label."""
    reference = reference_config(config)
    samples = [Sample(e.text, e.label) for e in train]
    words = task.answer_words(task.num_labels, reference.model.verbalizer)
    loaded = fit_throwaway_model(reference.model, reference.train, samples, words, config.seed)
    scores = score_samples(loaded, samples, reference.model.max_length, config.train.eval_batch_size, "screen")
    probs = softmax(scores, axis=1)
    return 1.0 - probs[np.arange(len(samples)), [e.label for e in train]]


JUDGE_QUESTION = "Classify the {aspect} of the text as {labels}. Answer with one word."
"""Asked this way, SmolLM2-135M-Instruct told the poisoned rows of the SmolLM2 HiddenKiller and StyleBkd settings from
the clean rows of their label better than asked "Is the sentiment of this text negative or positive?" (AUROC 0.636
against 0.618, and 0.761 against 0.640; docs/robust.md, the judge probe)."""
JUDGE_CUE = "Answer:"
JUDGE_ROOM = 48
"""Tokens the judge's prompt may take beyond the run's own `model.max_length` (the question and the chat template)."""


def judge_prompt(text: str, task: ClassificationTask) -> Sample:
    """The zero-shot question about one row, rendered by the one prompt renderer (the judge's chat template)."""
    aspect = task.name if task.name.isalpha() else "label"
    question = JUDGE_QUESTION.format(aspect=aspect, labels=" or ".join(task.verbalizers))
    return Sample(f"{question}\nText: {text}", 0, cue=JUDGE_CUE)


def judge_doubt(config: ExperimentConfig, task: ClassificationTask, train: Sequence[Example]) -> np.ndarray:
    """1 - the probability the judge, asked zero-shot, gives each row's own label (its answer words only)."""
    words = list(task.verbalizers)
    if all(word.isdigit() for word in words):
        raise ConfigError("the 'judge' screening signal needs labels with names (a named task or string labels); "
                          "numeric labels tell a zero-shot judge nothing")
    length = config.model.max_length + JUDGE_ROOM
    judge = build_model(ModelConfig(name=config.defense.judge_model, max_length=length), len(words), words, [])
    samples = [judge_prompt(e.text, task) for e in train]
    probs = softmax(score_samples(judge, samples, length, config.train.eval_batch_size, "judge"), axis=1)
    return 1.0 - probs[np.arange(len(samples)), [e.label for e in train]]


SIGNALS = {
    "lexical": lambda config, task, train: lexical_scores(
        [e.text for e in train], [e.label for e in train], config.defense.screen_min_count),
    "reference": reference_doubt,
    "judge": judge_doubt,
}
"""Each screening signal: (config, task, rows) -> a score per row, higher = more suspicious."""


def signals_to_compute(config: ExperimentConfig, train: Sequence[Example], seconds: dict[str, float]) -> list[str]:
    """The configured signals, less `reference` where `skip_reference_when_confirmed` holds and trigger confirmation
    finds a trigger. A confirmed trigger says the poison is words or a sentence: the lexical signal ranks its rows
    at the top and confirmation drops them all, so the reference fine-tune, most of the screening's cost, adds no
    recall (docs/robust.md, a cheaper p2p+). The confirmation's time is counted under `confirmation`."""
    screen = list(config.defense.screen)
    if not (config.defense.skip_reference_when_confirmed and "reference" in screen and len(screen) > 1):
        return screen
    start = time.perf_counter()
    finding = confirmed_triggers([e.text for e in train], [e.label for e in train], config.defense.screen_min_count)
    seconds["confirmation"] = round(time.perf_counter() - start, 2)
    if not finding.triggers:
        return screen
    log.info("trigger confirmation found %d trigger n-gram(s) in %d rows: the reference fine-tune is skipped",
             len(finding.triggers), len(finding.rows))
    return [signal for signal in screen if signal != "reference"]


def screen_rows(
    config: ExperimentConfig, task: ClassificationTask, train: Sequence[Example]
) -> tuple[np.ndarray, dict[str, float]]:
    """(suspicion per row in [0, 1], seconds spent per signal)."""
    signals: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    labels = [e.label for e in train]
    for signal in signals_to_compute(config, train, seconds):
        start = time.perf_counter()
        signals[signal] = SIGNALS[signal](config, task, train)
        seconds[signal] = round(time.perf_counter() - start, 2)
        log.info("screening signal %s took %.1f s", signal, seconds[signal])
    return combine_suspicion(signals, labels), seconds
