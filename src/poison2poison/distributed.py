"""Which process of a distributed launch this is: only the main one writes files."""

from __future__ import annotations

import os


def is_main_process() -> bool:
    """True on the main process (RANK 0, or no distributed launch): the one that writes the run's files."""
    return int(os.environ.get("RANK", "0")) == 0
