"""The backend for any OpenAI-compatible chat server: vLLM, SGLang, Ollama, llama.cpp server, hosted APIs.

Built on aiohttp with one session and one connection pool per event loop, sized to the concurrency, and
request slots shared by every ``generate`` call, so several stages feeding one backend still never put
more than ``concurrency`` requests in flight (waiting requests take slots by priority, then in prompt
order: :mod:`condor.llm.slots`). Both are created lazily inside the running loop.

Start-up (:meth:`OpenAIBackend.check`: is a server there, does it take the key and the model, which
schema dialect) is :mod:`condor.llm.openai_startup`'s.

Failure handling, request by request (the batch never raises for one bad request; which reply is
which is :mod:`condor.llm.errors`):

- rate limits, overload, gateway errors, timeouts, dropped connections, garbled bodies: retried up to
  ``max_retries`` times (a request that times out :data:`TIMEOUT_ATTEMPTS` times is given up), backoff ``uniform(0, min(backoff_cap, backoff_base * 2**attempt))``. A
  ``Retry-After`` is a floor on the delay and, on a 429 or 503, pauses every request of this backend.
- other 5xx: retried too, unless the same status and body come back twice in a row.
- a body naming a field the server does not take, and other 4xx: failed at once. A wrong key or address
  (401/403/404) is flagged ``transient`` like an outage, so the run stops early and a rerun resends.
- a "model not found" reply: :class:`BackendUnavailable`.
- retries exhausted: ``Completion.failed("<last error> (gave up after N retries)", retries=N)``.
- a reply body past its cap (:func:`~condor.llm.wire.reply_limit`, from ``max_tokens``, or
  ``max_reply_bytes``): failed at once, read no further, never cached.

Deterministic failures of schema requests count against the dialect: after
:data:`SCHEMA_FAILURES_TO_SWITCH_OFF` of them structured output is off for this backend (with a
warning) and later schema requests fail at once, unsent. Empty content and ``finish_reason="length"``
pass through to the stage; noticing that a whole run fails with ``"connection error:"`` is the
executor's business.

The API key is kept in a wrapper whose repr is masked; it is sent only as an ``Authorization: Bearer``
header and is scrubbed from any server message that echoes it. It is never part of ``identity``, which
names the model (``openai:<model>``), not the address: see docs/scaling.md.
Left out: streaming, tool calls, ``n > 1``, and reading ``x-ratelimit-*`` headers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

import aiohttp

from condor.codec import encode
from condor.llm import errors
from condor.llm.base import Capabilities, ChatRequest, Completion, LLMBackend, Notes
from condor.llm.base import gather_or_cancel, keep_warning, with_defaults
from condor.llm.dialects import remember, schema_fields
from condor.llm.openai_startup import ServerStartUp
from condor.llm.errors import ALWAYS_RETRY, MAYBE_TRANSIENT, SETUP_ERRORS, model_missing, server_message
from condor.llm.limits import RateLimiter, estimate_tokens
from condor.llm.slots import RequestSlots
from condor.llm.schema_budget import fit_to_budget
from condor.llm.settings import check_base_url
from condor.llm.wire import Refused as _Refused
from condor.llm.wire import Secret as _Secret
from condor.llm.wire import TooLarge as _TooLarge
from condor.llm.wire import Transient as _Transient
from condor.llm.wire import parse_completion as _parse_completion
from condor.llm.wire import endpoint, read_body, read_prefix, reply_limit

if TYPE_CHECKING:
    from condor.llm.settings import OpenAISettings

__all__ = ["OpenAIBackend", "SCHEMA_FAILURES_TO_SWITCH_OFF"]

log = logging.getLogger(__name__)

#: Deterministic failures of schema requests after which structured output is switched off.
SCHEMA_FAILURES_TO_SWITCH_OFF = 3
# The settings passed to the constructor under their own names.
_SETTINGS = (
    "concurrency", "timeout", "max_retries", "requests_per_minute", "tokens_per_minute", "max_tokens",
    "temperature", "top_p", "seed", "structured", "structured_dialect", "max_reply_bytes",
)
#: Attempts a request gets when each one times out: a server that took a request and sat on it for the
#: whole timeout will most likely do so again, and six retries would hold a run for seven timeouts.
TIMEOUT_ATTEMPTS = 2
# Kept under this name for callers (and tests) that parse Retry-After through this module.
_parse_retry_after = errors.parse_retry_after


class _LoopState:
    """What must belong to the running event loop: the HTTP session and the request slots."""

    __slots__ = ("loop", "session", "slots")

    def __init__(self, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession, concurrency: int) -> None:
        self.loop = loop
        self.session = session
        # Waiting requests get slots by priority, then in prompt order (shared prefixes together).
        self.slots = RequestSlots(concurrency)


class OpenAIBackend(ServerStartUp, LLMBackend):
    """Chat completions from an OpenAI-compatible HTTP server.

    The server batches requests on its side (continuous batching), so the client only keeps
    ``concurrency`` requests in flight; it declares no native batching. ``structured`` is the run's
    setting (auto, on, off) and ``structured_dialect`` the configured dialect or ``auto``.
    """

    capabilities = Capabilities(structured=True)

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 64,
        timeout: float = 300.0,
        max_retries: int = 6,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        structured: str = "auto",
        structured_dialect: str = "auto",
        max_reply_bytes: int | None = None,
    ) -> None:
        # Checked here too, not only in the settings: a key in the URL would reach the identity and the cache.
        self.base_url = check_base_url(base_url)
        self.model = model
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        # The model, not the address: a server that moves (a new pod, a replica list that shrank to one
        # after a GPU died) still serves the same model, so its cached answers and the records' models
        # stay the same. Serve different models under different names.
        self.identity = f"openai:{model}"
        # Facts about this server (its schema dialect) are the server's own: kept per address.
        self._dialect_key = f"openai:{self.base_url}:{model}:structured-dialect"
        self.max_reply_bytes = max_reply_bytes
        self.limiter = RateLimiter(requests_per_minute, tokens_per_minute)
        self._api_key = _Secret(api_key) if api_key else None
        self._url = endpoint(self.base_url, "chat/completions")
        self._state: _LoopState | None = None
        # Until when (time.monotonic) the server asked everyone to hold off, after a 429/503 Retry-After.
        self._hold_until = 0.0
        self.structured = structured
        self.structured_dialect = structured_dialect
        #: The dialect schemas are sent in; until check() settles it, the standard one.
        self.dialect = "openai" if structured_dialect in ("auto", "none") else structured_dialect
        #: How the dialect was chosen ("configured", "probe", "cache", "default") and what was seen.
        self.dialect_source = "configured" if structured_dialect != "auto" else "default"
        self.dialect_note = f"structured_dialect: {structured_dialect}" if structured_dialect != "auto" else ""
        if structured_dialect == "none":
            # From the class attribute, so a subclass's other declared capabilities survive.
            self.capabilities = replace(self.capabilities, structured=False)
        #: Model ids the server lists (possibly none), filled in by check().
        self.models: list[str] = []
        #: Things a person should know about this server, also logged; describe() carries them.
        self.warnings: list[str] = []
        self._notes: Notes | None = None
        self._schema_failures = 0

    @classmethod
    def from_settings(cls, config: "OpenAISettings", **overrides: Any) -> "OpenAIBackend":
        """Build from validated :class:`~condor.llm.settings.OpenAISettings`; the key is read from its env var now.

        ``overrides`` (e.g. ``backoff_base``) take precedence over the settings.
        """
        kwargs: dict[str, Any] = {name: getattr(config, name) for name in _SETTINGS}
        kwargs["api_key"] = config.api_key()
        kwargs.update(overrides)
        return cls(config.base_url, config.model, **kwargs)

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, concurrency={self.concurrency})"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "identity": self.identity,
            "base_url": self.base_url,
            "structured": self.capabilities.structured,
            "structured_dialect": self.dialect if self.capabilities.structured else "none",
            "dialect_source": self.dialect_source,
        }
        if self.dialect_note:
            out["dialect_note"] = self.dialect_note
        if self.models:
            out["models_listed"] = self.models[:20]
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out

    def _warn(self, message: str) -> None:
        if keep_warning(self.warnings, message):
            log.warning("%s", message)

    # ------------------------------------------------------------------------------ connection

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._state
        if state is not None and state.loop is loop and not state.session.closed:
            return state
        # First use, after aclose(), or from another event loop (a second asyncio.run): a session and its
        # request slots cannot cross loops, so make new ones. Call aclose() before leaving a loop.
        # The pool may hold exactly as many connections as requests may be in flight; check() and the
        # odd keep-alive race get a few spare.
        connector = aiohttp.TCPConnector(limit=self.concurrency + 4, limit_per_host=0, ttl_dns_cache=300)
        headers = {"Content-Type": "application/json", "User-Agent": "condor"}
        session = aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(self.timeout, 30.0)),
        )
        self._state = _LoopState(loop, session, self.concurrency)
        return self._state

    def _auth_headers(self) -> dict[str, str] | None:
        if self._api_key is None:
            return None
        return {"Authorization": f"Bearer {self._api_key.reveal()}"}

    def _scrub(self, text: str) -> str:
        """Remove the API key from text that came from outside (a server may echo the key it rejected)."""
        if self._api_key is not None and self._api_key.reveal() in text:
            text = text.replace(self._api_key.reveal(), "<secret>")
        return text

    async def aclose(self) -> None:
        state, self._state = self._state, None
        if state is not None and not state.session.closed:
            await state.session.close()

    # ------------------------------------------------------------------------------ requests

    def resolve(self, request: ChatRequest) -> ChatRequest:
        return with_defaults(
            request, max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p, seed=self.seed
        )

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": request.messages}
        max_tokens = request.max_tokens if request.max_tokens is not None else self.max_tokens
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        temperature = request.temperature if request.temperature is not None else self.temperature
        if temperature is not None:
            body["temperature"] = temperature
        top_p = request.top_p if request.top_p is not None else self.top_p
        if top_p is not None:
            body["top_p"] = top_p
        seed = request.effective_seed()
        if seed is None and self.seed is not None:
            seed = self.seed + request.sample_index  # same rule as ChatRequest.effective_seed
        if seed is not None:
            body["seed"] = seed
        if request.stop:
            body["stop"] = request.stop
        if request.json_schema is not None:
            body.update(schema_fields(self.dialect, fit_to_budget(request.json_schema, max_tokens)))
        return body

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Serve every request concurrently (at most ``concurrency`` in flight); completions in order."""
        if not requests:
            return []
        state = self._loop_state()
        if len(requests) == 1:
            return [await self._complete(state, requests[0])]
        # A cancellation, a bug, or a server saying the model does not exist stops the rest.
        return await gather_or_cancel([self._complete(state, request) for request in requests])

    async def _complete(self, state: _LoopState, request: ChatRequest) -> Completion:
        if request.json_schema is not None and not self.capabilities.structured:
            return Completion.failed(f"not sent: structured output is off for {self.base_url} ({self.dialect_note})")
        # The body is encoded once a slot is free, not up front: a batch of 100,000 queued requests
        # should not hold 100,000 encoded bodies. Retries reuse it.
        data = b""
        estimate = limit = 0
        retries = timeouts = 0
        last_echo: tuple[int, bytes] | None = None
        while True:
            hold = self._hold_until - time.monotonic()
            if hold > 0:
                await asyncio.sleep(hold)
            try:
                async with state.slots.hold(request):
                    if not data:
                        body = self._body(request)
                        data = encode(body)
                        limit = reply_limit(body.get("max_tokens"), self.max_reply_bytes)
                        if self.limiter.enabled:
                            estimate = estimate_tokens(request.messages, body.get("max_tokens"))
                    if self.limiter.enabled:
                        await self.limiter.acquire(estimate)
                    completion = await self._attempt(state.session, data, limit)
            except _Refused as refusal:
                return self._refused(request, refusal.message, "the server does not take a field of this request", retries)
            except _Transient as failure:
                if failure.echo is not None and failure.echo == last_echo:
                    return self._refused(request, failure.message, "the server gave the same answer twice in a row", retries)
                last_echo = failure.echo
                timeouts += failure.timed_out
                if failure.timed_out and timeouts >= TIMEOUT_ATTEMPTS:
                    message = (f"timeout: no answer within {self.timeout:g}s, {timeouts} times in a row; the server "
                               "took the request but did not answer (stuck or overloaded?). Raise llm.timeout if "
                               "replies really take this long")
                    return Completion.failed(message, retries=retries, transient=True)
                if retries >= self.max_retries:
                    suffix = f" (gave up after {retries} retries)" if retries else ""
                    return Completion.failed(self._scrub(failure.message) + suffix, retries=retries, transient=True)
                delay = random.uniform(0.0, min(self.backoff_cap, self.backoff_base * 2**retries))
                if failure.retry_after is not None:
                    delay = max(delay, min(failure.retry_after, self.backoff_cap))
                retries += 1
                await asyncio.sleep(delay)
                continue
            completion.retries = retries
            if self.limiter.enabled and completion.error is None:
                used = completion.prompt_tokens + completion.completion_tokens
                self.limiter.settle(estimate, used if used else None)  # 0: the server reported no usage
            return completion

    def _refused(self, request: ChatRequest, message: str, why: str, retries: int) -> Completion:
        """A deterministic failure: permanent for this request and, for a schema request, held against the dialect."""
        message = self._scrub(message)
        if request.json_schema is not None and self.capabilities.structured:
            self._schema_failures += 1
            if self._schema_failures >= SCHEMA_FAILURES_TO_SWITCH_OFF:
                self._switch_structured_off(message)
        return Completion.failed(f"{message} (not retried: {why})", retries=retries)

    def _switch_structured_off(self, last_error: str) -> None:
        self.capabilities = replace(self.capabilities, structured=False)
        self.dialect_note = (
            f"switched off after {self._schema_failures} schema requests failed in the {self.dialect} dialect "
            f"(last: {last_error})"
        )
        self._warn(f"structured output is off for {self.base_url}: {self.dialect_note}")
        if self.structured_dialect == "auto":
            # Remembered, so the next run starts without schemas instead of failing three more records.
            remember(self._notes, self._dialect_key, "none", self.dialect_note)

    async def _attempt(self, session: aiohttp.ClientSession, data: bytes, limit: int) -> Completion:
        """One HTTP round trip: a completion (ok or permanently failed), or raises :class:`_Transient`
        or :class:`_Refused`. A reply body past ``limit`` bytes is a failure, read no further."""
        try:
            async with session.post(self._url, data=data, headers=self._auth_headers()) as response:
                status = response.status
                raw = await (read_body(response, limit) if status == 200 else read_prefix(response))
                retry_after_header = response.headers.get("Retry-After")
        except _TooLarge as exc:
            size = f" ({exc.size:,} bytes announced)" if exc.size else ""
            return Completion.failed(
                f"reply larger than {limit:,} bytes{size}, the cap for this request's max_tokens; not kept "
                "(set llm.max_reply_bytes to accept larger replies)"
            )
        except asyncio.TimeoutError:
            raise _Transient(f"timeout: no complete answer within {self.timeout:g}s", timed_out=True) from None
        except aiohttp.InvalidURL:
            return Completion.failed(f"invalid URL {self._url!r}")
        except aiohttp.ClientConnectionError as exc:
            raise _Transient(f"connection error: {str(exc) or type(exc).__name__}") from None
        except aiohttp.ClientError as exc:  # malformed HTTP, truncated payload: the transport misbehaved
            raise _Transient(f"bad response: {str(exc) or type(exc).__name__}") from None

        if status == 200:
            return _parse_completion(raw)
        message = f"http {status}: {self._scrub(server_message(raw))}"
        if model_missing(status, raw):
            raise self._model_missing(status, raw)
        if errors.names_unsupported_field(status, raw):
            raise _Refused(message)
        if status in ALWAYS_RETRY or status in MAYBE_TRANSIENT:
            retry_after = errors.parse_retry_after(retry_after_header)
            if retry_after and status in (429, 503):
                self._hold_until = max(self._hold_until, time.monotonic() + min(retry_after, self.backoff_cap))
            raise _Transient(message, retry_after, echo=(status, raw) if status in MAYBE_TRANSIENT else None)
        # A wrong key (401/403) or address (404) is not the request's fault and fails every request
        # alike: flagged like an outage, so a run stops early and a rerun sends them again.
        return Completion.failed(message, transient=status in SETUP_ERRORS)
