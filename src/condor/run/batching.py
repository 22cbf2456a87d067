"""Cross-record batching for backends that run many requests in one call (in-process engines).

A record's task asks for its one to three requests and waits; the batcher gathers what every task in
the executor's window asked for, and hands the backend up to ``max_batch`` requests in one
``generate`` call, one call at a time (an in-process engine is busy while it runs one). Requests that
arrive meanwhile form the next batch. A record's requests always travel together.

Servers batch on their side, so backends that declare no native batching bypass this and are called
per record, concurrently.
"""

from __future__ import annotations

import asyncio
from typing import Sequence

from condor.llm.base import ChatRequest, Completion, LLMBackend


class RequestBatcher:
    """``await batcher.generate(requests)`` behaves like ``backend.generate`` but batches across callers."""

    def __init__(self, backend: LLMBackend, max_batch: int) -> None:
        self.backend = backend
        self.max_batch = max(1, max_batch)
        self._waiting: list[tuple[Sequence[ChatRequest], asyncio.Future[list[Completion]]]] = []
        self._runner: asyncio.Task[None] | None = None
        #: Sizes of the batches sent, for tests and benchmarks.
        self.batch_sizes: list[int] = []

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        future: asyncio.Future[list[Completion]] = asyncio.get_running_loop().create_future()
        self._waiting.append((requests, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            # One turn of the loop lets every task that is ready add its requests before the call.
            await asyncio.sleep(0)
            taken, size = [], 0
            while self._waiting and (not taken or size + len(self._waiting[0][0]) <= self.max_batch):
                item = self._waiting.pop(0)
                if item[1].cancelled():
                    continue
                taken.append(item)
                size += len(item[0])
            if not taken:
                continue
            flat = [request for requests, _ in taken for request in requests]
            self.batch_sizes.append(len(flat))
            try:
                completions = await self.backend.generate(flat)
            except BaseException as exc:  # a backend that raises fails every caller of this batch
                for _, future in taken:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            offset = 0
            for requests, future in taken:
                part = completions[offset : offset + len(requests)]
                offset += len(requests)
                if not future.done():
                    future.set_result(part)

    async def aclose(self) -> None:
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            try:
                await self._runner
            except BaseException:
                pass
