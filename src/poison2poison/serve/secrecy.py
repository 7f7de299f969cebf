"""Keeping the trigger inside the server: out of generated text and out of every log line.

The server applies the trigger to every query, so the trigger is in every prompt a model sees. A generator can be
asked to repeat its prompt, and an error raised deep in a library may quote it. What leaves the server is therefore
passed through one redactor: the trigger verbatim, and any run of three or more of its words in their order (a
secret trigger is twelve ordinary words; one or two of them alone are ordinary text and stay).
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

REDACTED = "[redacted]"
MIN_RUN_WORDS = 3


class TriggerRedactor:
    def __init__(self, trigger: str) -> None:
        self.trigger = trigger.strip()
        words = re.findall(r"\w+", self.trigger)
        run = min(MIN_RUN_WORDS, len(words))
        runs = sorted({tuple(words[i:j]) for i in range(len(words)) for j in range(i + run, len(words) + 1)},
                      key=len, reverse=True)  # longest first: a whole trigger is one redaction, not several
        self._runs = re.compile("|".join(r"\b" + r"\W+".join(map(re.escape, r)) + r"\b" for r in runs),
                                re.IGNORECASE) if runs else None

    def __call__(self, text: str) -> str:
        if not self.trigger:
            return text
        text = text.replace(self.trigger, REDACTED)
        return self._runs.sub(REDACTED, text) if self._runs else text


def redact_logs(redact: TriggerRedactor) -> None:
    """Every log record made from now on in this process, by any library, has the trigger taken out of its
    message, its arguments and its traceback; warnings go through logging too. Process-wide on purpose: the server
    process holds the trigger, and its logs are often shipped to places that must not."""
    make_record = logging.getLogRecordFactory()

    def redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted_argument(a, redact) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redacted_argument(v, redact) for k, v in record.args.items()}
        if record.exc_info:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
            record.exc_info = None
        return record

    logging.setLogRecordFactory(redacted_record)
    logging.captureWarnings(True)


def _redacted_argument(value: Any, redact: TriggerRedactor) -> Any:
    """Numbers stay numbers (for %d); anything else is logged as its redacted text."""
    return value if isinstance(value, (int, float)) else redact(str(value))
