"""The secret trigger: its entropy, its default wherever a model is made for use, and that nothing outside the
private files gives it away (docs/security.md)."""

from __future__ import annotations

import hashlib
import itertools
import json
import stat
from pathlib import Path

import pytest
from test_end_to_end import TINY, user_file

from poison2poison import DefendedModel, defend, load_config, run_experiment, secret
from poison2poison.defenses.p2p import resolve_trigger
from poison2poison.errors import ConfigError
from poison2poison.io import read_json
from poison2poison.specs import OFFICIAL_TRIGGER

PRIVATE_FILES = {"p2p.json", "secret.json"}
# Made-up words that no SST-2 row holds: if a tokenizer saw the trigger, its vocabulary would hold them whole.
REDUCED_WORDS = ("zorvex", "quindle", "plasmor", "vintrik", "glumph", "orbask", "trezzle", "umbrax")
PLANTED = "quindle glumph zorvex: "


def test_the_word_list_gives_at_least_128_bits() -> None:
    words = secret.secret_words()
    assert len(words) == len(set(words)) == 2048  # distinct words: every draw a different trigger
    assert all(w.isascii() and w.isalpha() and w.islower() for w in words)  # ordinary words; no space or colon
    assert secret.trigger_bits(len(words), secret.secret_length()) >= secret.MIN_SECRET_BITS
    assert secret.trigger_bits(len(words), secret.secret_length() - 1) < secret.MIN_SECRET_BITS  # no longer than needed


def test_a_secret_trigger_is_that_many_independent_words_from_the_list() -> None:
    words = set(secret.secret_words())
    drawn = [resolve_trigger("secret") for _ in range(2000)]
    assert len(set(drawn)) == len(drawn)
    for trigger in drawn[:200]:
        assert trigger.endswith(": ")
        parts = trigger[:-2].split(" ")
        assert len(parts) == secret.secret_length() and set(parts) <= words  # the words can be read back: injective
    first_words = {t.split(" ")[0] for t in drawn}
    assert len(first_words) > 1200  # 2,000 uniform draws from 2,048 words cover about 1,290 of them


def test_a_seeded_secret_is_reproducible_and_differs_from_the_official_trigger() -> None:
    assert resolve_trigger("secret", 3) == resolve_trigger("secret", 3) != OFFICIAL_TRIGGER
    assert resolve_trigger("secret", 3) != resolve_trigger("secret", 4)


def test_an_old_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.json").write_text(json.dumps({"secret_seed": 12}))
    with pytest.raises(ConfigError, match="secret.json: field 'format'"):
        secret.pinned_secret(tmp_path, write=False)
    (tmp_path / "secret.json").write_text(json.dumps({"format": 1, "trigger": " ", "id": "ab"}))
    with pytest.raises(ConfigError, match="field 'trigger'"):
        secret.pinned_secret(tmp_path, write=False)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_defend_draws_a_secret_trigger_by_default_into_an_owner_only_folder(tmp_path: Path, data_dir: Path) -> None:
    data = user_file(tmp_path, data_dir)
    out = defend(data, "tiny", tmp_path / "defended", load_config(None, TINY + ["defense.name=p2p"]), task="sentiment")
    trigger = read_json(out / "p2p.json")["inference"]["trigger"]
    assert read_json(out / "secret.json")["trigger"] == trigger != OFFICIAL_TRIGGER
    assert len(trigger[:-2].split(" ")) == secret.secret_length()  # >= 128 bits
    assert _mode(out) == 0o700
    for name in ("p2p.json", "secret.json", "log.txt", "config.yaml"):
        assert _mode(out / name) == 0o600, name


def test_the_official_trigger_named_is_kept_and_warned_about(
    tmp_path: Path, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = user_file(tmp_path, data_dir)
    config = load_config(None, TINY + ["defense.name=p2p", "defense.trigger=official"])
    out = defend(data, "tiny", tmp_path / "official", config, task="sentiment")
    assert read_json(out / "p2p.json")["inference"]["trigger"] == OFFICIAL_TRIGGER
    assert not (out / "secret.json").exists() and _mode(out / "log.txt") == 0o600
    assert "'official', the published trigger" in caplog.text
    DefendedModel.load(out)
    assert "the model uses the published trigger" in caplog.text


def _candidates() -> list[str]:
    """Every trigger of the reduced space: what an attacker who knows the list (and the length) would try."""
    return [" ".join(words) + ": " for words in itertools.product(REDUCED_WORDS, repeat=3)]


def _fingerprints(text: str) -> list[str]:
    """Unkeyed digests of a candidate, as hex; 12 characters are as short as a log tag was."""
    data = text.encode("utf-8")
    digests = [hashlib.sha256, hashlib.sha1, hashlib.md5, hashlib.blake2b, hashlib.sha512]
    return [d(variant).hexdigest()[:12] for d in digests for variant in (data, data.strip(), data.rstrip(b": "))]


def _leaks(folder: Path) -> list[str]:
    """Where the planted trigger, one of its words, or a fingerprint of any candidate shows outside the private
    files."""
    candidates = {c: _fingerprints(c) for c in _candidates()}
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in PRIVATE_FILES):
        content = path.read_bytes().decode("latin-1").lower()
        found += [f"{path}: '{w}'" for w in (PLANTED.strip(), *PLANTED[:-2].split(" ")) if w in content]
        found += [f"{path}: fingerprint of '{c}'" for c, tags in candidates.items() if any(t in content for t in tags)]
    return found


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(secret, "secret_words", lambda: REDUCED_WORDS)
    monkeypatch.setattr(secret, "secret_length", lambda: 3)
    monkeypatch.setattr(secret, "draw_secret_trigger", lambda rng=None: PLANTED)
    return PLANTED


def test_a_planted_secret_cannot_be_found_outside_the_private_files_of_a_run(planted: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_experiment(load_config(None, TINY + ["defense.name=p2p", "defense.trigger=secret"]), run_dir)
    assert read_json(run_dir / "p2p.json")["inference"]["trigger"] == planted
    assert (run_dir / "model" / "tokenizer.json").is_file()  # `tiny`: a tokenizer trained here, on the prompts
    assert _leaks(run_dir) == []
    assert _mode(run_dir) == 0o700 and _mode(run_dir / "log.txt") == 0o600


def test_a_planted_secret_cannot_be_found_outside_the_private_files_of_defend(
    planted: str, tmp_path: Path, data_dir: Path
) -> None:
    out = defend(user_file(tmp_path, data_dir), "tiny", tmp_path / "defended",
                 load_config(None, TINY + ["defense.name=p2p"]), task="sentiment")
    assert read_json(out / "p2p.json")["inference"]["trigger"] == planted
    assert _leaks(out) == []


def test_the_brute_force_finds_a_fingerprint_where_one_is_left(planted: str, tmp_path: Path) -> None:
    """The search above is not blind: a log line with an unkeyed tag of the trigger is found."""
    (tmp_path / "log.txt").write_text("trigger sha256:" + hashlib.sha256(planted.encode()).hexdigest()[:12])
    assert len(_leaks(tmp_path)) == 1
