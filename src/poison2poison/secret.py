"""The secret benign trigger: drawn so that it cannot be guessed, and kept where only its owner can read it.

P2P holds only while the attacker cannot write the benign trigger into their poison (docs/security.md). A secret
trigger is `secret_length()` words drawn uniformly and independently, with the operating system's randomness, from
a shipped list of 2,048 common English words (BIP-39's): 12 words, 132 bits. Common words read as ordinary text to
a pretrained model (1,992 of the 2,048 are single tokens of MiniLM's vocabulary, none is more than three), and the
bound does not depend on the model: a list taken from the tokenizer's vocabulary would not exist yet for `tiny`,
whose tokenizer is trained after the trigger is drawn and must never see it.

No fingerprint of the trigger is kept anywhere. Logs may show the secret's id, a random tag drawn beside it that
says nothing about it.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import random
import secrets
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from .config import DefenseConfig
from .distributed import is_main_process
from .errors import ConfigError
from .io import atomic_write_json, read_json

log = logging.getLogger(__name__)

WORD_FILE = "secret_words.txt"
MIN_SECRET_BITS = 128
SECRET_FILE = "secret.json"
SECRET_FORMAT = 1
OWNER_ONLY_DIR = 0o700


@functools.cache
def secret_words() -> tuple[str, ...]:
    """The shipped word list (lines starting with # are its licence note)."""
    text = files("poison2poison").joinpath(WORD_FILE).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def words_needed(list_size: int, bits: int = MIN_SECRET_BITS) -> int:
    """How many words drawn from a list of `list_size` give at least `bits` bits."""
    return math.ceil(bits / math.log2(list_size))


def trigger_bits(list_size: int, length: int) -> float:
    """The entropy of `length` independent uniform draws from `list_size` distinct words."""
    return length * math.log2(list_size)


def secret_length() -> int:
    return words_needed(len(secret_words()))


def draw_secret_trigger(rng: random.Random | None = None, length: int | None = None) -> str:
    """`length` (default `secret_length()`) words from the list and a colon, as the paper's trigger ends. A seeded
    `rng` is for reproducible experiments: whoever has the seed has the trigger."""
    chooser = rng or secrets.SystemRandom()
    words = secret_words()
    return " ".join(chooser.choice(words) for _ in range(length or secret_length())) + ": "


def holds_private_trigger(defense: DefenseConfig) -> bool:
    """Whether a run of this defense writes a trigger that must stay private: any but the published one."""
    return defense.has_benign_subset and defense.trigger != "official"


def make_run_dir(run_dir: Path, private: bool) -> None:
    """Create the run folder; one that will hold a private trigger is owner-only (0700), even if it existed."""
    run_dir.mkdir(parents=True, exist_ok=True, mode=OWNER_ONLY_DIR if private else 0o777)
    if private:
        os.chmod(run_dir, OWNER_ONLY_DIR)


@dataclass(frozen=True)
class PinnedSecret:
    trigger: str
    id: str
    """Random, drawn beside the trigger: what a log may show to say which secret a run used."""


def pinned_secret(run_dir: Path, write: bool) -> PinnedSecret:
    """The run's secret trigger: the one in RUN_DIR/secret.json, or a new one, saved there (owner-only) when
    `write`, so that a resumed run queries its saved model with the trigger it was trained with."""
    path = run_dir / SECRET_FILE
    if path.is_file():
        return _read_secret(path)
    secret = PinnedSecret(draw_secret_trigger(), secrets.token_hex(4))
    if write:
        atomic_write_json(path, {"format": SECRET_FORMAT, "trigger": secret.trigger, "id": secret.id})
    log.info("a new secret trigger was drawn (%d bits; id %s)", round(trigger_bits(len(secret_words()),
             secret_length())), secret.id)
    return secret


def _read_secret(path: Path) -> PinnedSecret:
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != SECRET_FORMAT:
        raise ConfigError(
            f"{path}: field 'format': not {SECRET_FORMAT}; a secret.json written by an older version held a 63-bit seed "
            f"of a trigger from 50 words, which can be guessed: delete this folder and run again for a real secret"
        )
    trigger, tag = data.get("trigger"), data.get("id")
    if not isinstance(trigger, str) or not trigger.strip():
        raise ConfigError(f"{path}: field 'trigger': missing or empty")
    if not isinstance(tag, str) or not tag:
        raise ConfigError(f"{path}: field 'id': missing or empty")
    log.info("secret trigger read from %s (id %s)", path, tag)
    return PinnedSecret(trigger, tag)


def pinned_defense(defense: DefenseConfig, run_dir: Path) -> DefenseConfig:
    """The defense settings a run builds its one Defense from. A 'secret' trigger without `secret_seed` is drawn once
    per run and kept in RUN_DIR/secret.json (owner-only, like p2p.json), so a resumed run queries its saved model with
    the trigger it was trained with. The run keeps its own config (and hash) for everything else."""
    if defense.trigger != "secret" or defense.secret_seed is not None:
        return defense
    return defense.model_copy(update={"trigger": pinned_secret(run_dir, write=is_main_process()).trigger})
