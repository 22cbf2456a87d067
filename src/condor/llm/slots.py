"""Who gets a backend's next free request slot: earlier pipeline steps first, shared prompt starts together.

A backend keeps at most ``concurrency`` requests in flight; when more are waiting, the order in which
they get a slot is the order in which the server sees them. Two rules decide it:

- **Priority** (``ChatRequest.priority``, lower first). A streaming executor gives each step of a
  pipeline its position, so questions go before answers, answers before critiques: later steps then
  always find work queued behind the earlier ones, and the run ends on its last step's requests alone
  instead of on a chain of steps each waiting for the one before (the idle tail a step barrier makes).
- **Prompt order**, among requests of the same priority. Waiting requests are served in a sweep
  through the sorted order of their prompts (messages compared in turn; a circular elevator scan):
  requests that share a long prompt start (one template and knowledge tag, the repair turn of a reply
  that could not be read) reach the server one after the other, while the start is still in the
  server's prefix cache (vLLM automatic prefix caching, SGLang RadixAttention). The sweep only moves
  forward and starts again from the lowest prompt, so no request waits longer than one pass.

With a slot free and nobody waiting, a request goes at once: the order only matters when the server
is the bottleneck. Left out: weighting by prompt length and any knowledge of the server's cache size.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from contextlib import asynccontextmanager
from typing import AsyncIterator

from condor.llm.base import ChatRequest

_Waiter = tuple[tuple[str, ...], int, asyncio.Future]


def prompt_key(request: ChatRequest) -> tuple[str, ...]:
    """What the sweep sorts by: the message texts in order (roles follow the template's order)."""
    return tuple(str(message.get("content") or "") for message in request.messages)


class _Sweep:
    """Waiters of one priority, served in a circular scan of their prompt keys."""

    def __init__(self) -> None:
        self.ahead: list[_Waiter] = []  # keys at or after the cursor: this pass
        self.behind: list[_Waiter] = []  # keys before it: the next pass
        self.cursor: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.ahead) + len(self.behind)

    def push(self, waiter: _Waiter) -> None:
        heapq.heappush(self.ahead if self.cursor is None or waiter[0] >= self.cursor else self.behind, waiter)

    def pop(self) -> _Waiter:
        if not self.ahead:
            self.ahead, self.behind = self.behind, []
        waiter = heapq.heappop(self.ahead)
        self.cursor = waiter[0]
        return waiter


class RequestSlots:
    """``async with slots.hold(request):`` at most ``size`` holders at once, waiters in the order above."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.free = size
        self._levels: dict[int, _Sweep] = {}
        self._waiting = 0
        self._tickets = itertools.count()

    @property
    def waiting(self) -> int:
        return self._waiting

    @asynccontextmanager
    async def hold(self, request: ChatRequest) -> AsyncIterator[None]:
        if self.free > 0 and not self._waiting:
            self.free -= 1
        else:
            future: asyncio.Future = asyncio.get_running_loop().create_future()
            self._levels.setdefault(request.priority, _Sweep()).push((prompt_key(request), next(self._tickets), future))
            self._waiting += 1
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._release()  # the slot was handed over just as the waiter was cancelled
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        """Hand the slot to the next live waiter, or free it."""
        while self._waiting:
            level = min(p for p, sweep in self._levels.items() if sweep)
            _, _, future = self._levels[level].pop()
            self._waiting -= 1
            if not future.done():
                future.set_result(None)
                return
        self.free += 1
