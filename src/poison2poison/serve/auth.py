"""API keys: read from a file or the environment, checked in constant time; and the refusal to listen beyond
loopback without them."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import ConfigError

log = logging.getLogger(__name__)

KEYS_ENV = "P2P_API_KEYS"
"""Comma-separated API keys, added to those of --api-key-file."""
MIN_KEY_CHARS = 16


class ApiKeys:
    """Accepted keys, kept as digests: a check compares the presented key with every one, whatever matches, so its
    time says nothing about which key or how much of it was right."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._digests = [_digest(k) for k in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, presented: str) -> bool:
        given = _digest(presented)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(digest, given)
        return matched


def _digest(key: str) -> bytes:
    """Equal-length values for compare_digest, whatever the keys' lengths."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def load_api_keys(key_file: Path | None, environ: Mapping[str, str] = os.environ) -> ApiKeys:
    """Keys from `key_file` (one a line; blank lines and lines starting with # are skipped) and from P2P_API_KEYS.
    A key shorter than 16 characters is refused; errors name the line, never the key."""
    sources: list[tuple[str, str]] = []
    if key_file is not None:
        try:
            lines = key_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"{key_file}: cannot read the API key file ({exc.strerror})") from None
        sources += [(f"{key_file}, line {n}", line.strip()) for n, line in enumerate(lines, 1)
                    if line.strip() and not line.lstrip().startswith("#")]
        if key_file.stat().st_mode & 0o077:
            log.warning("%s can be read by other users: it holds the API keys (chmod 600 it)", key_file)
    sources += [(f"{KEYS_ENV}, key {n}", key.strip())
                for n, key in enumerate(environ.get(KEYS_ENV, "").split(","), 1) if key.strip()]
    short = [where for where, key in sources if len(key) < MIN_KEY_CHARS]
    if short:
        raise ConfigError(f"API keys need at least {MIN_KEY_CHARS} characters: {', '.join(short)}")
    if key_file is not None and not sources:
        raise ConfigError(f"{key_file}: no API key in the file")
    return ApiKeys([key for _, key in sources])


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses; a name other than localhost may resolve anywhere, so it is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: ApiKeys, insecure: bool) -> None:
    """Refuse to listen beyond this machine without keys: whoever reached the port could use the model."""
    if keys or is_loopback(host):
        return
    if not insecure:
        raise ConfigError(f"refusing to serve on {host} without API keys: give --api-key-file or {KEYS_ENV}, listen "
                          f"on 127.0.0.1, or pass --insecure")
    log.warning("serving on %s without API keys (--insecure): anyone who reaches it can query the model", host)
