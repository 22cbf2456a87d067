"""The next request for a model that keeps one prompt in memory: the one that starts like the last.

llama.cpp in process (the embedded backend) answers one request at a time and keeps the key/value
state of the last prompt and its reply. A new prompt that starts with the same text is read only from
where it differs, so the order of the waiting requests decides how much of every prompt is read again.
On two cores a prompt is read at about 130 tokens a second, and in the demo prompt reading was 40% of
the model's time, most of it spent on text the model had just read:

- a reply the gates reject is resampled with the same prompt, but by the time the resample is sent
  another record's request has taken the model, so the whole prompt is read again;
- a repair turn (the prompt, the reply that could not be read, a note) starts with the text just read;
- requests of one step share their template's instructions, and the streaming executor interleaves steps.

:class:`PrefixReuseQueue` runs the calls one at a time on one worker thread and picks, among the waiting
requests, the one whose prompt shares the longest start with the last prompt and its reply. Before it
picks it gives the caller of the last reply a moment (``settle``) to send its follow-up, which it
does within a few turns of the event loop. Ties go to the lower ``ChatRequest.priority`` (earlier
pipeline steps), then to the longest waiting. No request is passed over more than ``patience`` times.

Servers keep many prefixes and take many requests at once; they are ordered by
:mod:`condor.llm.slots` instead.
"""

from __future__ import annotations

import asyncio
import itertools
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Callable

from condor.llm.base import ChatRequest, Completion

#: Seconds to wait after a reply before choosing the next request: long enough for the caller to check
#: the reply and send its resample or next step (microseconds to a few milliseconds of event-loop work),
#: short against the seconds a local model takes per request.
SETTLE_SECONDS = 0.02
#: How many times a waiting request may be passed over for one that shares more with the last prompt.
PATIENCE = 16
#: Shared starts shorter than this (characters) count as none: a role name and a word or two save a token
#: or two, not worth serving a later pipeline step first.
MIN_SHARED = 32


def prompt_text(request: ChatRequest) -> str:
    """The messages as one string, in the order a chat template lays them out (role, then content)."""
    return "".join(f"{message.get('role', '')}\x1f{message.get('content') or ''}\x1e" for message in request.messages)


def shared_start(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b`` (a binary search of slice comparisons,
    which run in C; a character loop in Python costs milliseconds on prompts of a few kilobytes)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


@dataclass(eq=False)
class _Waiter:
    text: str
    request: ChatRequest
    ticket: int
    future: asyncio.Future = field(repr=False)
    passed_over: int = 0


class PrefixReuseQueue:
    """Runs ``call(request)`` on ``worker`` one request at a time, in the order described above."""

    def __init__(
        self,
        call: Callable[[ChatRequest], Completion],
        worker: Executor,
        *,
        settle: float = SETTLE_SECONDS,
        patience: int = PATIENCE,
    ) -> None:
        self._call = call
        self._worker = worker
        self.settle = settle
        self.patience = patience
        self._waiting: list[_Waiter] = []
        self._tickets = itertools.count()
        #: The last prompt and its reply, as :func:`prompt_text` writes them: what the model holds now.
        self.last = ""
        self._drainer: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, request: ChatRequest) -> Completion:
        """The completion of ``request``, once its turn has come and the model has written it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        waiter = _Waiter(prompt_text(request), request, next(self._tickets), future)
        if self._loop is not loop:
            # A backend used from a new event loop: the old loop's waiters can no longer be answered.
            self._waiting = [old for old in self._waiting if old.future.get_loop() is loop]
            self._loop, self._drainer = loop, None
        self._waiting.append(waiter)
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain(), name="condor-prefix-reuse")
        try:
            return await future
        except asyncio.CancelledError:
            if waiter in self._waiting:  # never started: nobody will run it now
                self._waiting.remove(waiter)
            raise

    def _choose(self) -> _Waiter:
        overdue = [waiter for waiter in self._waiting if waiter.passed_over >= self.patience]
        if overdue:
            chosen = min(overdue, key=lambda waiter: waiter.ticket)
        else:
            chosen = max(
                self._waiting,
                key=lambda waiter: (self._reuse(waiter), -waiter.request.priority, -waiter.ticket),
            )
        self._waiting.remove(chosen)
        for waiter in self._waiting:
            waiter.passed_over += 1
        return chosen

    def _reuse(self, waiter: _Waiter) -> int:
        shared = shared_start(self.last, waiter.text)
        return shared if shared >= MIN_SHARED else 0

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._waiting = [waiter for waiter in self._waiting if not waiter.future.done()]
            if not self._waiting:
                return
            waiter = self._choose()
            try:
                completion = await loop.run_in_executor(self._worker, self._call, waiter.request)
            except asyncio.CancelledError:
                if not waiter.future.done():
                    waiter.future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - the caller gets the error; the others still run
                if not waiter.future.done():
                    waiter.future.set_exception(exc)
                self.last = ""
            else:
                self.last = waiter.text + f"assistant\x1f{completion.text}"
                if not waiter.future.done():
                    waiter.future.set_result(completion)
            # The caller of the reply just written may be about to send its follow-up (a resample, a
            # repair, the record's next step): let it join the choice.
            await asyncio.sleep(self.settle)
