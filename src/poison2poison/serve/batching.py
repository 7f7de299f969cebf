"""Dynamic batching: the inputs of concurrent requests share model calls.

A model answers a batch of 32 inputs in about the time it takes for a few, so requests that arrive together are run
together. The first input of a batch waits at most a short window for company; a batch holds at most a fixed number
of inputs; batches run one at a time, in a worker thread, so the event loop keeps accepting requests meanwhile and
the inputs that arrive during a batch form the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Callable, Generic, Sequence, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


class DynamicBatcher(Generic[Item, Result]):
    """Runs `run(items) -> results` (one result per item, in order) over batches gathered from every `submit`."""

    def __init__(
        self, run: Callable[[list[Item]], list[Result]], max_size: int, wait_s: float,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self.run, self.max_size, self.wait_s, self.on_batch = run, max_size, wait_s, on_batch
        self._pending: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        """Called once the server has stopped taking requests; anything still queued is failed, not dropped."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._pending:
            _, future = self._pending.popleft()
            if not future.done():
                future.set_exception(RuntimeError("the server stopped before this input was answered"))

    async def submit(self, items: Sequence[Item]) -> list[Result]:
        """The results of `items`, once the batches that hold them have run. Cancelling (a request's timeout) leaves
        its items out of every batch not yet started."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._pending.extend(zip(items, futures))
        self._arrived.set()
        return list(await asyncio.gather(*futures))

    async def _serve(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch:
                await self._answer(batch)

    async def _next_batch(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        """Up to `max_size` live inputs: whatever is queued, after waiting for the first and then at most `wait_s`
        for the batch to fill."""
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while len(self._pending) < self.max_size and (left := deadline - loop.time()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                break
        batch = []
        while self._pending and len(batch) < self.max_size:
            item, future = self._pending.popleft()
            if not future.done():  # cancelled by its request's timeout
                batch.append((item, future))
        return batch

    async def _answer(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        self.on_batch(len(batch))
        try:
            results = await asyncio.to_thread(self.run, [item for item, _ in batch])
        except Exception as exc:  # every waiting request gets the error; the batcher goes on
            log.error("a batch of %d inputs failed", len(batch), exc_info=exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)
