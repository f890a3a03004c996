"""Requests that arrive together go to the model as one batch: a bounded queue, one model call at a time."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

Call = Callable[[list[np.ndarray]], list[np.ndarray]]


class QueueFull(Exception):
    """The queue holds as many requests as it may; the client should retry later."""


@dataclass
class _Item:
    arrays: list[np.ndarray]
    rows: int
    arrived: float
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Joins waiting requests (up to `max_batch` rows, waiting at most `timeout_s` after the first for more)
    into one call of `call`, run in one worker thread so that the event loop goes on taking requests."""

    def __init__(self, call: Call, *, max_batch: int, timeout_s: float, max_queue: int,
                 on_batch: Callable[[int], None] = lambda rows: None) -> None:
        self.call = call
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._pending: deque[_Item] = deque()
        self._rows = 0
        self._busy = False
        self._arrived: asyncio.Event | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dltrain-model")
        self._task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        """Requests waiting for the model (not counting the batch it is running)."""
        return len(self._pending)

    def start(self) -> None:
        """Start taking batches, in the running event loop."""
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Answer every waiting request, then stop the worker."""
        while self._pending or self._busy:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
        self._worker.shutdown(wait=True)

    async def submit(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The model's outputs for one request's rows (one array per input); QueueFull when the queue is full."""
        if len(self._pending) >= self.max_queue:
            raise QueueFull(f"{len(self._pending)} requests are waiting for the model")
        future = asyncio.get_running_loop().create_future()
        item = _Item(arrays, len(arrays[0]), time.monotonic(), future)
        self._pending.append(item)
        self._rows += item.rows
        self._arrived.set()
        return await future

    async def run_alone(self, call: Callable[[], Any]) -> Any:
        """`call()` in the model's worker thread, between batches (generation, which is no batched predict)."""
        if len(self._pending) >= self.max_queue:
            raise QueueFull(f"{len(self._pending)} requests are waiting for the model")
        return await asyncio.get_running_loop().run_in_executor(self._worker, call)

    async def _next_batch(self) -> list[_Item]:
        """The first waiting request, and those after it while they fit in max_batch rows; waits for more
        up to timeout_s after the first arrived."""
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._pending[0].arrived + self.timeout_s
        while self._rows < self.max_batch and (left := deadline - time.monotonic()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                break
        batch = [self._pending.popleft()]
        rows = batch[0].rows
        while self._pending and rows + self._pending[0].rows <= self.max_batch:
            rows += self._pending[0].rows
            batch.append(self._pending.popleft())
        self._rows -= rows
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            self._busy = True
            try:
                answers = await loop.run_in_executor(self._worker, self._answer, batch)
            finally:
                self._busy = False
            for item, answer in zip(batch, answers):
                if item.future.done():  # the client went away
                    continue
                if isinstance(answer, BaseException):
                    item.future.set_exception(answer)
                else:
                    item.future.set_result(answer)

    def _answer(self, batch: list[_Item]) -> list[list[np.ndarray] | BaseException]:
        """Each request's outputs from one model call; if that call fails, each request alone, so that one
        request the model cannot take fails alone."""
        try:
            if len(batch) == 1:
                outputs = self.call(batch[0].arrays)
            else:
                outputs = self.call([np.concatenate(parts) for parts in zip(*(item.arrays for item in batch))])
        except Exception as error:  # noqa: BLE001 - reported to the request(s) that caused it
            if len(batch) == 1:
                return [error]
            return [one for item in batch for one in self._answer([item])]
        self.on_batch(sum(item.rows for item in batch))
        answers, start = [], 0
        for item in batch:
            answers.append([out[start:start + item.rows] for out in outputs])
            start += item.rows
        return answers
