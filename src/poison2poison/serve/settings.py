"""What `p2p serve` is started with: the model folder, where to listen, the keys' source and the limits.

Settings travel to every worker process as JSON (uvicorn starts its workers afresh), so they hold the path of the key
file, never a key.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

SETTINGS_ENV = "P2P_SERVE_SETTINGS"
"""The environment variable that hands the settings to uvicorn's worker processes."""


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_dir: Path
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, description="processes, each with its own copy of the model")
    api_key_file: Path | None = Field(None, description="one key per line; P2P_API_KEYS adds comma-separated keys")
    insecure: bool = Field(False, description="allow a non-loopback address without API keys")
    allow_detect: bool = Field(True, description="honour `detect` (it tells the client whether the plain model agrees)")
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_inputs: int = Field(64, ge=1, description="texts per request")
    max_input_chars: int = Field(8192, ge=1, description="characters per text or message")
    timeout_s: float = Field(30.0, gt=0, description="a request not answered by then gets 504")
    max_batch_size: int = Field(32, ge=1, description="inputs run through the model at once")
    batch_wait_ms: float = Field(5.0, ge=0, description="how long the first input of a batch waits for company")

    def to_environment(self) -> dict[str, str]:
        return {SETTINGS_ENV: self.model_dump_json()}

    @classmethod
    def from_environment(cls) -> "ServeSettings":
        return cls.model_validate_json(os.environ[SETTINGS_ENV])
