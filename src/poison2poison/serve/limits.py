"""Request limits: body size (checked before and while the body is read), inputs per request, characters per input,
and the time a request may wait for its answer."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Sequence, TypeVar

from starlette.exceptions import HTTPException

from .errors import error_response
from .metrics import App, Receive, Scope, Send
from .settings import ServeSettings

Answer = TypeVar("Answer")


class BodyLimit:
    """ASGI middleware: a body longer than `max_bytes` gets 413, whether its length is declared or streamed."""

    def __init__(self, app: App, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await error_response(413, self._message())(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self._message())
            return message

        await self.app(scope, counted_receive, send)

    def _message(self) -> str:
        return f"request body too large: at most {self.max_bytes} bytes"


def check_texts(texts: Sequence[str], settings: ServeSettings, what: str = "inputs") -> None:
    """413 for too many texts or one too long; the message gives the index and the limit, not the text."""
    if len(texts) > settings.max_inputs:
        raise HTTPException(413, f"{len(texts)} {what}; at most {settings.max_inputs} per request")
    for i, text in enumerate(texts):
        if len(text) > settings.max_input_chars:
            raise HTTPException(413, f"{what}[{i}] has {len(text)} characters; at most {settings.max_input_chars}")


async def within_timeout(answer: Awaitable[Answer], settings: ServeSettings) -> Answer:
    """The answer, or 504 once the request has waited `timeout_s`; its inputs then leave the batches to come."""
    try:
        return await asyncio.wait_for(answer, settings.timeout_s)
    except asyncio.TimeoutError:
        raise HTTPException(504, f"no answer within {settings.timeout_s:g} s; try fewer inputs, or later") from None
