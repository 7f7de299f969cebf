"""Starting the server: check what can fail before listening, then run uvicorn until SIGTERM or SIGINT.

On SIGTERM uvicorn stops accepting connections, waits for every accepted request to be answered (the batcher keeps
running until then), and only then shuts the application down. A request cannot wait longer than the request
timeout, so the wait is bounded by it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import tempfile
from typing import Any, Iterator

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from ..errors import P2PError
from .auth import check_bind, load_api_keys
from .backends import check_model_dir
from .metrics import MULTIPROCESS_ENV
from .settings import ServeSettings

APP_FACTORY = "poison2poison.serve.app:app_from_environment"
SHUTDOWN_MARGIN_S = 5
WORKER_HEALTHCHECK_S = 60
"""How long uvicorn waits for a worker to answer its health check. Its default (5 s) is shorter than a worker takes
to import torch and load a model on a busy machine, and a worker that does not answer is killed and started again,
for ever."""


class ServeError(P2PError):
    """The server could not start (the address is taken, or a worker failed as it loaded the model)."""


def run_server(settings: ServeSettings) -> None:
    """Serve the model in `settings.model_dir` until stopped. Keys, address and manifest are checked first, and a
    problem with any is raised before anything listens."""
    check_bind(settings.host, load_api_keys(settings.api_key_file), settings.insecure)
    check_model_dir(settings.model_dir)
    with _worker_environment(settings):
        try:
            uvicorn.run(APP_FACTORY, factory=True, host=settings.host, port=settings.port, workers=settings.workers,
                        log_config=log_config(), server_header=False, timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
                        timeout_graceful_shutdown=math.ceil(settings.timeout_s) + SHUTDOWN_MARGIN_S)
        except SystemExit:  # uvicorn exits when its server did not start; its log says why
            raise ServeError(f"the server did not start on {settings.host}:{settings.port} (see the log above)") from None


def log_config() -> dict[str, Any]:
    """uvicorn's logging, with this package's log lines through the same handler in every worker."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["poison2poison"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


@contextlib.contextmanager
def _worker_environment(settings: ServeSettings) -> Iterator[None]:
    """uvicorn builds the app in each worker from an import string, so the settings go through the environment;
    several workers also write their metrics into one fresh folder (prometheus_client's multiprocess mode), removed
    once they have stopped. A single worker needs none, nor could one be removed: uvicorn ends that process with the
    signal that stopped it."""
    with contextlib.ExitStack() as stack:
        added = settings.to_environment()
        if settings.workers > 1:
            added[MULTIPROCESS_ENV] = stack.enter_context(tempfile.TemporaryDirectory(prefix="p2p-metrics-"))
        os.environ.update(added)
        try:
            yield
        finally:
            for name in added:
                os.environ.pop(name, None)
