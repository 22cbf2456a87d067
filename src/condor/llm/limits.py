"""Client-side rate limits for remote backends: requests per minute and tokens per minute.

Each limit is a token bucket refilled continuously at ``per_minute / 60`` per second, holding at most
``burst_seconds`` worth of budget, so a burst at start-up cannot send a whole minute's budget at once.
Callers *reserve* budget: the bucket level may go negative, and each caller sleeps exactly until its own
reservation is covered. That gives first-come-first-served order without a lock, without busy-waiting,
and without binding to an event loop. A request larger than the burst size is allowed; it just waits
longer and puts the bucket in debt.

Token costs are estimates made before sending (``prompt characters / 4 + max_tokens``); once the server
reports real usage, :meth:`RateLimiter.settle` returns the overestimate to the bucket (or charges the
shortfall). What this leaves out: reading the server's own ``x-ratelimit-*`` headers, and limits shared
between processes; a limit here only paces this process.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Sequence


class TokenBucket:
    """A continuously refilled budget of ``per_minute`` units per minute."""

    __slots__ = ("rate", "capacity", "_level", "_stamp")

    def __init__(self, per_minute: float, *, burst_seconds: float = 1.0) -> None:
        if per_minute <= 0:
            raise ValueError(f"per_minute must be positive, got {per_minute}")
        if burst_seconds <= 0:
            raise ValueError(f"burst_seconds must be positive, got {burst_seconds}")
        self.rate = per_minute / 60.0
        # At least one unit, so a limit below one per burst window still lets single requests through.
        self.capacity = max(1.0, self.rate * burst_seconds)
        self._level = self.capacity
        self._stamp = time.monotonic()

    def _refill(self) -> float:
        now = time.monotonic()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now
        return self._level

    def reserve(self, amount: float) -> float:
        """Take ``amount`` now and return how many seconds the caller must wait before using it."""
        level = self._refill() - amount
        self._level = level
        return 0.0 if level >= 0 else -level / self.rate

    def give_back(self, amount: float) -> None:
        """Return unused budget (negative ``amount`` charges more); never above capacity."""
        self._level = min(self.capacity, self._refill() + amount)

    async def acquire(self, amount: float = 1.0) -> None:
        wait = self.reserve(amount)
        if wait <= 0:
            return
        try:
            await asyncio.sleep(wait)
        except asyncio.CancelledError:
            # A cancelled caller never sends; let the next one have its budget.
            self.give_back(amount)
            raise

    @property
    def level(self) -> float:
        return self._refill()


def estimate_tokens(messages: Sequence[dict[str, Any]], max_tokens: int | None) -> int:
    """A cheap upper-ish estimate of a request's token cost: four characters per prompt token, plus the
    whole completion budget (servers count ``max_tokens`` against limits before generating)."""
    chars = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
    return chars // 4 + (max_tokens or 0)


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits together; either may be ``None`` (no limit)."""

    __slots__ = ("requests", "tokens")

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        burst_seconds: float = 1.0,
    ) -> None:
        self.requests = TokenBucket(requests_per_minute, burst_seconds=burst_seconds) if requests_per_minute else None
        self.tokens = TokenBucket(tokens_per_minute, burst_seconds=burst_seconds) if tokens_per_minute else None

    @property
    def enabled(self) -> bool:
        return self.requests is not None or self.tokens is not None

    async def acquire(self, estimated_tokens: int = 0) -> None:
        """Wait until one request of ``estimated_tokens`` may be sent."""
        if self.requests is not None:
            await self.requests.acquire(1.0)
        if self.tokens is not None:
            await self.tokens.acquire(float(estimated_tokens))

    def settle(self, estimated_tokens: int, actual_tokens: int | None) -> None:
        """Correct the token bucket once the real usage of a request is known (``None``: unknown, keep
        the estimate)."""
        if self.tokens is not None and actual_tokens is not None:
            self.tokens.give_back(float(estimated_tokens - actual_tokens))

    def __repr__(self) -> str:
        rpm = self.requests.rate * 60 if self.requests else None
        tpm = self.tokens.rate * 60 if self.tokens else None
        return f"RateLimiter(requests_per_minute={rpm}, tokens_per_minute={tpm})"
