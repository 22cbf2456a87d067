"""Many servers as one backend: replicas of one model behind a list of base URLs.

``base_url: [http://gpu1:8000/v1, http://gpu2:8000/v1]`` (or ``--base-url`` given several times) makes a
:class:`ReplicaBackend`: one :class:`~condor.llm.openai.OpenAIBackend` per address, each with its own
connection pool and ``concurrency`` requests in flight, behind one ``generate``. Executors see a single
backend, so the local executor and Ray workers (which build backends from the settings) both get it.

Routing: a replica takes at most its ``concurrency`` requests at once; the others wait here, first come
first served, and each slot that frees up goes to the next one, on the least loaded replica with room
(least outstanding requests; ties in turn). So a slow replica gets less work instead of an equal share
of it. A request that carries a schema goes only to replicas that still take schemas; requests with and
without schemas wait in two queues, so that a schema request waiting for a replica that takes schemas
never holds back a plain request that a free replica could serve (replicas of mixed dialects).

Health: a transport failure of a replica (connection refused or dropped, timeout, 5xx, after that
replica's own single retry) is a strike against it; :data:`STRIKES` in a row take it out for
``replica_cooldown`` seconds, doubling on each new ejection (at most :data:`MAX_COOLDOWN`). Its
in-flight requests are cancelled at once and sent to the others, without counting as retries. When its
time is up it must pass ``check()`` (the server answers, the model is there) before it gets work again.
A 429 is no strike: the replica is busy, not broken, and the request simply tries another one. A
request fails only after ``max_retries`` resends; when every replica is out it waits for the next one
to come back, and after ``max_retries`` such waits fails as a transport failure, so the executor's
outage breaker stops the run as it does for one server. A replica whose server says the model does
not exist is out for good; when all are, the run stops at once with that message.

Identity: the replicas serve one model, so the cache key and every record's ``models`` name the model,
not the replica that answered: ``openai:<model>``, as for a single server of that model, so a list that
grows, shrinks or falls to one address keeps every cached answer. The manifest lists the replicas with
what each served. Left out: weights per replica, and sharing one client-side rate limit between
replicas (``requests_per_minute`` applies to each).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Sequence

from condor.llm.base import BackendUnavailable, Capabilities, ChatRequest, Completion, LLMBackend, Notes, keep_warning
from condor.llm.base import gather_or_cancel
from condor.llm.openai import OpenAIBackend

if TYPE_CHECKING:
    from condor.llm.settings import OpenAISettings

__all__ = ["MAX_COOLDOWN", "STRIKES", "ReplicaBackend"]

log = logging.getLogger(__name__)

#: Transport failures in a row that take a replica out.
STRIKES = 3
#: Longest a replica stays out before it is checked again, in seconds.
MAX_COOLDOWN = 600.0


class Replica:
    """One server of the set and what is known about its health."""

    def __init__(self, backend: OpenAIBackend, order: int) -> None:
        self.backend = backend
        self.url = backend.base_url
        self.order = order
        self.outstanding = 0
        self.strikes = 0
        self.live = False  # until check() says so
        self.out_until = 0.0
        self.broken: str | None = None  # out for good: the server's own words
        self.probe: asyncio.Task | None = None
        self.down: asyncio.Event | None = None
        self.served = self.failures = self.ejections = 0
        self.last_error = ""

    def state(self) -> str:
        return "broken" if self.broken else "live" if self.live else "out"


class ReplicaBackend(LLMBackend):
    """Replicas of one model served at several addresses, as one backend (see the module docstring)."""

    def __init__(
        self,
        replicas: Sequence[OpenAIBackend],
        *,
        max_retries: int = 6,
        cooldown: float = 10.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
    ) -> None:
        if len(replicas) < 2:
            raise ValueError("a replica set needs at least two servers")
        self.replicas = [Replica(backend, order) for order, backend in enumerate(replicas)]
        self.model = replicas[0].model
        self.identity = replicas[0].identity  # the model's, whichever replica answers
        self.concurrency = sum(backend.concurrency for backend in replicas)
        self.max_retries = max_retries
        self.cooldown = cooldown
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.warnings: list[str] = []
        self._turn = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Requests waiting for a free slot, by whether they carry a schema: (arrival, request, replica to
        #: avoid, future of the replica given). Within a queue, and between the two, first come first served.
        self._waiting: dict[bool, deque[tuple[int, ChatRequest, Replica | None, asyncio.Future[Replica | None]]]] = {
            True: deque(), False: deque()}
        self._arrivals = 0

    @classmethod
    def from_settings(cls, settings: "OpenAISettings", **overrides: Any) -> "ReplicaBackend":
        """One :class:`OpenAIBackend` per address of ``settings.base_url``; each retries a failure once
        itself (so that a request's own deterministic 5xx is still recognised), then it is this
        backend's to send elsewhere."""
        inner_retries = min(1, settings.max_retries)
        backends = [
            OpenAIBackend.from_settings(settings.model_copy(update={"base_url": url}), max_retries=inner_retries, **overrides)
            for url in settings.urls()
        ]
        return cls(backends, max_retries=settings.max_retries, cooldown=settings.replica_cooldown,
                   **{k: v for k, v in overrides.items() if k in ("backoff_base", "backoff_cap")})

    def __repr__(self) -> str:
        return f"ReplicaBackend({[r.url for r in self.replicas]!r}, model={self.model!r})"

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        # Schemas are asked for only while every replica that has answered takes them (a replica may
        # find at check() or mid-run that its server does not); before any check, what they declare.
        known = [r for r in self.replicas if r.live] or self.replicas
        return Capabilities(structured=all(r.backend.capabilities.structured for r in known))

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"identity": self.identity, "structured": self.capabilities.structured, "replicas": [
            {"base_url": r.url, "state": r.state(), "served": r.served, "failures": r.failures,
             "ejections": r.ejections, **({"last_error": r.last_error} if r.last_error else {}),
             "structured_dialect": r.backend.describe().get("structured_dialect")}
            for r in self.replicas
        ]}
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out

    def _warn(self, message: str) -> None:
        keep_warning(self.warnings, message)
        log.warning("%s", message)  # every time: a replica taken out again is news

    def use_notes(self, notes: Notes) -> None:
        for replica in self.replicas:
            replica.backend.use_notes(notes)

    def resolve(self, request: ChatRequest) -> ChatRequest:
        return self.replicas[0].backend.resolve(request)

    # ------------------------------------------------------------------------------ health

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Events and probe tasks belong to one event loop; a new loop (a second asyncio.run) starts afresh.
            self._loop = loop
            for queue in self._waiting.values():
                queue.clear()
            for replica in self.replicas:
                replica.down, replica.probe, replica.outstanding = asyncio.Event(), None, 0

    async def check(self) -> None:
        """Check every replica at once; those that fail are out (and checked again later). Raises only
        when none answers."""
        self._bind_loop()
        results = await asyncio.gather(*(r.backend.check() for r in self.replicas), return_exceptions=True)
        for replica, result in zip(self.replicas, results):
            if isinstance(result, BackendUnavailable):
                replica.last_error = str(result)
                self._take_out(replica, f"it failed its start-up check: {result}")
            elif isinstance(result, BaseException):
                raise result
            else:
                replica.live = True
        if not any(r.live for r in self.replicas):
            first = self.replicas[0].last_error
            raise BackendUnavailable(f"none of the {len(self.replicas)} replicas answered; {first}")

    def _take_out(self, replica: Replica, why: str) -> None:
        replica.live = False
        replica.ejections += 1
        pause = min(MAX_COOLDOWN, self.cooldown * 2 ** (replica.ejections - 1))
        replica.out_until = time.monotonic() + pause
        if replica.down is not None:
            replica.down.set()  # its in-flight requests go elsewhere now
        replica.down = asyncio.Event()
        self._warn(f"replica {replica.url} is out for {pause:g}s: {why}")
        self._dispatch()

    def _strike(self, replica: Replica, error: str) -> None:
        replica.failures += 1
        replica.strikes += 1
        replica.last_error = error
        if replica.live and replica.strikes >= STRIKES:
            self._take_out(replica, f"{replica.strikes} failures in a row (last: {error})")

    async def _readmit(self, replica: Replica) -> None:
        try:
            await replica.backend.check()
        except BackendUnavailable as exc:
            replica.last_error = str(exc)
            self._take_out(replica, f"it is still failing: {exc}")
        else:
            replica.live, replica.strikes = True, 0
            log.warning("replica %s is back", replica.url)
        finally:
            replica.probe = None
            self._dispatch()

    def _free(self, request: ChatRequest, avoid: Replica | None) -> Replica | None:
        """The least loaded live replica with a free slot that takes ``request`` (preferring one other
        than ``avoid``), or None."""
        live = [r for r in self.replicas if r.live]
        if request.json_schema is not None and any(r.backend.capabilities.structured for r in live):
            # Only to replicas that take schemas; when none does, any replica fails it at once, unsent.
            live = [r for r in live if r.backend.capabilities.structured]
        free = [r for r in live if r.outstanding < r.backend.concurrency]
        if not free:
            return None
        pool = [r for r in free if r is not avoid] or free
        self._turn += 1
        n = len(self.replicas)
        return min(pool, key=lambda r: (r.outstanding, (r.order - self._turn) % n))

    def _dispatch(self) -> None:
        """Hand free slots to waiting requests, first come first served among those a free replica can
        take; when no replica is live any more, tell every waiter so (None)."""
        while True:
            heads = []
            for queue in self._waiting.values():
                while queue and queue[0][3].done():
                    queue.popleft()  # cancelled while it waited
                if queue:
                    heads.append(queue)
            if not heads:
                return
            for queue in sorted(heads, key=lambda q: q[0][0]):
                _, request, avoid, waiter = queue[0]
                replica = self._free(request, avoid)
                if replica is not None:
                    queue.popleft()
                    replica.outstanding += 1
                    waiter.set_result(replica)
                    break
            else:
                if not any(r.live or r.probe is not None for r in self.replicas):
                    for queue in heads:
                        for _, _, _, other in queue:
                            if not other.done():
                                other.set_result(None)
                        queue.clear()
                return

    async def _acquire(self, request: ChatRequest, avoid: Replica | None) -> Replica | None:
        """A slot on a replica for ``request`` (its ``outstanding`` counted), waiting for one to free up
        so that work goes where it is done soonest; None when every replica is out."""
        now = time.monotonic()
        for replica in self.replicas:
            if not replica.live and not replica.broken and replica.probe is None and now >= replica.out_until:
                replica.probe = asyncio.create_task(self._readmit(replica))
        queue = self._waiting[request.json_schema is not None]
        if not queue:
            replica = self._free(request, avoid)
            if replica is not None:
                replica.outstanding += 1
                return replica
        if not any(r.live or r.probe is not None for r in self.replicas):
            return None
        waiter: asyncio.Future[Replica | None] = asyncio.get_running_loop().create_future()
        self._arrivals += 1
        queue.append((self._arrivals, request, avoid, waiter))
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                self._release(waiter.result())  # a slot handed over just as this request was cancelled
            raise

    def _release(self, replica: Replica) -> None:
        replica.outstanding -= 1
        self._dispatch()

    # ------------------------------------------------------------------------------ requests

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        if not requests:
            return []
        self._bind_loop()
        return await gather_or_cancel([self._send(request) for request in requests])

    async def _on(self, replica: Replica, request: ChatRequest) -> Completion | None:
        """``request`` served by ``replica`` (holding one of its slots); None when the replica was taken
        out meanwhile."""
        assert replica.down is not None
        call = asyncio.ensure_future(replica.backend.generate([request]))
        down = asyncio.ensure_future(replica.down.wait())
        try:
            await asyncio.wait((call, down), return_when=asyncio.FIRST_COMPLETED)
        finally:
            down.cancel()
            if not call.done():
                call.cancel()  # the replica went out, or this request was cancelled
            self._release(replica)
        if call.cancelled() or not call.done():
            return None
        try:
            return call.result()[0]
        except BackendUnavailable as exc:  # this server says it has no such model: out for good
            replica.broken = replica.last_error = str(exc)
            self._take_out(replica, str(exc))
            if all(r.broken for r in self.replicas):
                raise
            return None

    async def _send(self, request: ChatRequest) -> Completion:
        retries = 0
        avoid: Replica | None = None
        last: Completion | None = None
        while True:
            replica = await self._acquire(request, avoid)
            if replica is None:
                broken = [r.broken for r in self.replicas if r.broken]
                if len(broken) == len(self.replicas):
                    raise BackendUnavailable(broken[0])
                if retries >= self.max_retries:
                    return self._gave_up(last, retries)
                retries += 1
                wake = min(r.out_until for r in self.replicas if not r.broken)
                await asyncio.sleep(max(0.05, wake - time.monotonic()))
                continue
            completion = await self._on(replica, request)
            if completion is None:
                continue  # its replica went out while it waited: resent, not counted as a retry
            if completion.ok or not completion.transient:
                # An answer, or a failure of the request itself (a 400): either way the server works.
                replica.strikes = 0
                replica.served += 1
                completion.retries += retries
                return completion
            if not (completion.error or "").startswith("http 429"):
                self._strike(replica, completion.error or "no text in completion")
            last = completion
            if retries >= self.max_retries:
                return self._gave_up(last, retries)
            retries += 1
            avoid = replica
            if not any(r.live for r in self.replicas if r is not replica):
                # Nowhere else to go: back off as a single server's client would.
                await asyncio.sleep(random.uniform(0.0, min(self.backoff_cap, self.backoff_base * 2**retries)))

    def _gave_up(self, last: Completion | None, retries: int) -> Completion:
        out = [r for r in self.replicas if not r.live]
        where = f"{len(out)} of {len(self.replicas)} replicas out" if out else "every replica failed it"
        error = (last.error if last is not None else None) or next(
            (r.last_error for r in self.replicas if r.last_error), "no replica answered")
        return Completion.failed(f"{error} ({where}; gave up after {retries} retries)", retries=retries, transient=True)

    async def aclose(self) -> None:
        for replica in self.replicas:
            if replica.probe is not None:
                replica.probe.cancel()
                replica.probe = None
        for replica in self.replicas:
            await replica.backend.aclose()
