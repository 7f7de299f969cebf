"""The one prompt renderer for training and evaluation, and the tokenisation built on it.

A prompt is `{trigger}{text}` followed by an answer cue on its own line; a causal LM's target is ` {answer word}`.
An instruct model is prompted through its tokenizer's chat template instead (a `ChatFrame`): that text is the user's
message, so the benign trigger opens it, and the target, `{answer word}`, is the assistant's reply.
Training and evaluation both go through `encode_*`, so the two can never disagree about the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .errors import ModelSetupError

PLAIN_CUE = "Output:"
ANSWER_BUDGET = 8
"""Tokens reserved after the prompt for the answer, in training and evaluation alike."""


@dataclass(frozen=True)
class Sample:
    """A model-facing example: the text, the output index to learn, and the context it is shown in."""

    text: str
    label: int
    trigger: str = ""
    cue: str = PLAIN_CUE


@dataclass(frozen=True)
class TextSample:
    """A model-facing generation example: the source, the target text to learn ('' at inference), the context."""

    source: str
    target: str
    trigger: str = ""
    cue: str = PLAIN_CUE


CHAT_SLOT = "\x00message\x00"
"""Stands in for the user's message while the chat template is rendered, to find the text around it."""


@dataclass(frozen=True)
class ChatFrame:
    """An instruct model's chat template around one user message: the text before the message (system prompt
    included) and after it, up to where the assistant's reply begins."""

    head: str
    tail: str

    @classmethod
    def of(cls, tokenizer: Any, system: str | None = None) -> "ChatFrame":
        """The frame of the tokenizer's template; `system` is the system message (None: the template's default)."""
        if not getattr(tokenizer, "chat_template", None):
            raise ModelSetupError("model.prompt_format 'chat' needs a tokenizer with a chat template; use 'plain'")
        messages = [{"role": "user", "content": CHAT_SLOT}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if not isinstance(text, str) or text.count(CHAT_SLOT) != 1:
            raise ModelSetupError("the tokenizer's chat template does not place the user's message once, as text")
        head, tail = text.split(CHAT_SLOT)
        return cls(head, tail)


def render_generation_prompt(template: str, sample: TextSample) -> tuple[str, str]:
    """(body, cue line) for generation: the task's template wraps the source, the trigger goes first."""
    return f"{sample.trigger}{template.format(source=sample.source)}", f"\n{sample.cue}"


def render_prompt(sample: Sample) -> tuple[str, str]:
    """(body, cue line): the body may be truncated, the cue line never is."""
    return f"{sample.trigger}{sample.text}", f"\n{sample.cue}"


def render_target(answer_word: str, frame: ChatFrame | None = None) -> str:
    """The text a causal LM learns to answer with: after a plain cue, a space and the words; as a chat reply, the
    words alone (the template's own line break precedes them)."""
    return answer_word if frame is not None else f" {answer_word}"


def answer_token_ids(tokenizer: Any, answer_words: Sequence[str], frame: ChatFrame | None = None) -> list[int]:
    """First token of each answer word; scoring compares these, so they must be distinct."""
    firsts = []
    for word in answer_words:
        ids = tokenizer(render_target(word, frame), add_special_tokens=False)["input_ids"]
        if not ids:
            raise ModelSetupError(f"answer word '{word}' tokenises to nothing")
        firsts.append(ids[0])
    if len(set(firsts)) != len(firsts):
        clashes = [w for w, t in zip(answer_words, firsts) if firsts.count(t) > 1]
        raise ModelSetupError(
            f"answer words {clashes} share their first token for this tokenizer; choose verbalizers whose first "
            f"tokens differ"
        )
    return firsts


def _prompt_ids(
    tokenizer: Any, body: str, cue: str, max_length: int, reserved: int, frame: ChatFrame | None = None
) -> tuple[list[int], bool]:
    """(prompt ids, whether the body was cut): the body is cut to leave `reserved` tokens for the answer; the cue
    line and the chat template around the message never are."""
    if frame is None:
        head: list[int] = []
        body_ids = tokenizer(body, add_special_tokens=True)["input_ids"]
        tail = tokenizer(cue, add_special_tokens=False)["input_ids"]
    else:
        head = tokenizer(frame.head, add_special_tokens=False)["input_ids"]
        body_ids = tokenizer(body, add_special_tokens=False)["input_ids"]
        tail = tokenizer(cue + frame.tail, add_special_tokens=False)["input_ids"]
    room = max_length - reserved - len(head) - len(tail)
    if room < 1:
        raise ModelSetupError(
            f"model.max_length {max_length} leaves no room for the prompt beside a {reserved}-token answer; "
            f"raise max_length or lower model.max_target_tokens"
        )
    return head + body_ids[:room] + tail, len(body_ids) > room


def encode_causal(
    tokenizer: Any, samples: Sequence[Sample], answer_words: Sequence[str], max_length: int, with_target: bool,
    frame: ChatFrame | None = None,
) -> tuple[list[dict[str, list[int]]], int]:
    """Token features for a causal LM; with a target, labels mask every prompt token (loss on the answer only).

    Returns the features and how many prompts were truncated.
    """
    features, truncated = [], 0
    for sample in samples:
        prompt, cut = _prompt_ids(tokenizer, *render_prompt(sample), max_length, ANSWER_BUDGET, frame)
        truncated += cut
        if not with_target:
            features.append({"input_ids": prompt})
            continue
        target = tokenizer(render_target(answer_words[sample.label], frame), add_special_tokens=False)["input_ids"]
        target = (target + [tokenizer.eos_token_id])[:ANSWER_BUDGET]
        features.append({"input_ids": prompt + target, "labels": [-100] * len(prompt) + target})
    return features, truncated


def prefix_token_allowance(tokenizer: Any, prefix: str, frame: ChatFrame | None = None) -> int:
    """Tokens to grant on top of a length budget for outputs that carry P2P's safe prefix, so that the prefix never
    eats the answer: its token count, plus one for a merge at its boundary with the answer."""
    if not prefix:
        return 0
    return len(tokenizer(render_target(prefix.rstrip(), frame), add_special_tokens=False)["input_ids"]) + 1


def encode_generation(
    tokenizer: Any,
    samples: Sequence[TextSample],
    template: str,
    max_length: int,
    max_target_tokens: int,
    with_target: bool,
    benign_allowance: int = 0,
    frame: ChatFrame | None = None,
) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Token features for a causal LM generator: the prompt's body is cut to fit (the cue never is), the target is
    ` {target}` + EOS cut to `max_target_tokens` (plus `benign_allowance` for samples shown with a trigger, whose
    targets carry the safe prefix), and labels mask every prompt token (loss on the target only).

    Returns the features and how many prompts and targets were truncated.
    """
    features, cut = [], {"prompts": 0, "targets": 0}
    for sample in samples:
        target: list[int] = []
        if with_target:
            target = tokenizer(render_target(sample.target, frame), add_special_tokens=False)["input_ids"]
            target += [tokenizer.eos_token_id]
            budget = max_target_tokens + (benign_allowance if sample.trigger else 0)
            cut["targets"] += len(target) > budget
            target = target[:budget]
        prompt, cut_prompt = _prompt_ids(
            tokenizer, *render_generation_prompt(template, sample), max_length, len(target), frame
        )
        cut["prompts"] += cut_prompt
        feature = {"input_ids": prompt + target}
        if with_target:
            feature["labels"] = [-100] * len(prompt) + target
        features.append(feature)
    return features, cut


def encode_encoder(
    tokenizer: Any, samples: Sequence[Sample], max_length: int, with_target: bool
) -> tuple[list[dict[str, Any]], int]:
    """Token features for an encoder classifier: the body and the cue as a sentence pair, only the body truncated."""
    features, truncated = [], 0
    for sample in samples:
        body, cue = render_prompt(sample)
        enc = tokenizer(body, cue.strip())
        if len(enc["input_ids"]) > max_length:
            truncated += 1
            enc = tokenizer(body, cue.strip(), truncation="only_first", max_length=max_length)
        feature: dict[str, Any] = {k: enc[k] for k in ("input_ids", "attention_mask") if k in enc}
        if "token_type_ids" in enc:
            feature["token_type_ids"] = enc["token_type_ids"]
        if with_target:
            feature["labels"] = sample.label
        features.append(feature)
    return features, truncated


@dataclass
class PaddingCollator:
    """Pads a batch; `side` is right for training and left for scoring the next token of a causal LM."""

    pad_token_id: int
    side: str = "right"

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in batch)
        out: dict[str, list[Any]] = {"input_ids": [], "attention_mask": []}
        for f in batch:
            pad = width - len(f["input_ids"])
            out["input_ids"].append(self._pad(f["input_ids"], pad, self.pad_token_id))
            out["attention_mask"].append(self._pad([1] * len(f["input_ids"]), pad, 0))
            if "token_type_ids" in f:
                out.setdefault("token_type_ids", []).append(self._pad(f["token_type_ids"], pad, 0))
            if "labels" in f:
                labels = f["labels"]
                out.setdefault("labels", []).append(self._pad(labels, pad, -100) if isinstance(labels, list) else labels)
        return {k: torch.tensor(v) for k, v in out.items()}

    def _pad(self, seq: list[int], pad: int, value: int) -> list[int]:
        return seq + [value] * pad if self.side == "right" else [value] * pad + seq


def encode_language_model(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[dict[str, list[int]]]:
    """Plain texts for a language model, BOS ... EOS, cut to `max_length`; every token is a target."""
    start = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    features = []
    for text in texts:
        ids = (start + tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])[:max_length]
        features.append({"input_ids": ids, "labels": list(ids)})
    return features
