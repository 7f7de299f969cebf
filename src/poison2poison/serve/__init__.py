"""`p2p serve`: a defended model behind an HTTP API, with the trigger kept server-side (docs/serving.md).

Needs the `serve` extra: `pip install 'poison2poison[serve]'`.
"""

from __future__ import annotations

from .runner import ServeError, run_server
from .settings import ServeSettings

__all__ = ["ServeError", "ServeSettings", "run_server"]
