"""The backend for any OpenAI-compatible chat server: vLLM, SGLang, Ollama, llama.cpp server, hosted APIs.

Built on aiohttp with one session and one connection pool per event loop, sized to the concurrency, and a
semaphore shared by every ``generate`` call, so several stages feeding one backend still never put more
than ``concurrency`` requests in flight. Both are created lazily inside the running loop.

Failure handling, request by request (the batch never raises for one bad request):

- 429, 408, 409, 425 and 5xx other than 501/505, connection errors (refused, reset, dropped, "server
  disconnected"), timeouts, and bodies that are not the JSON of a chat completion are *transient*:
  retried up to ``max_retries`` times with exponential backoff and full jitter
  (``uniform(0, min(backoff_cap, backoff_base * 2**attempt))``). A ``Retry-After`` header (seconds or
  HTTP date) is a floor on that delay, capped at ``backoff_cap``; on a 429 or 503 it also pauses every
  other request of this backend until then, since the server asked the client, not one request, to wait.
- other 4xx (400, 401, 403, 404, 422, ...) are *permanent*: ``Completion.failed("http 400: <message>")``
  at once, without retrying.
- retries exhausted: ``Completion.failed("<last error> (gave up after N retries)", retries=N)``.

Empty content comes back as ``text=""`` and ``finish_reason="length"`` passes through: what to do with
them is the stage's decision. :meth:`OpenAIBackend.check` tells "no server at this address" apart from
everything else, raising :class:`BackendUnavailable`; the CLI calls it before a run. If the server goes
away *during* a run, requests fail one by one with errors starting ``"connection error:"`` or
``"timeout"``; noticing that a whole run is failing that way is the caller's job, not this module's.

The API key is kept in a wrapper whose repr is masked; it is sent only as an ``Authorization: Bearer``
header and is scrubbed from any server message that echoes it. It is never part of ``identity``.
Left out: streaming, tool calls, ``n > 1``, and reading ``x-ratelimit-*`` headers.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Sequence

import aiohttp

from condor.llm.base import (
    BackendUnavailable,
    Capabilities,
    ChatRequest,
    Completion,
    LLMBackend,
    clean_text,
    with_defaults,
)
from condor.llm.limits import RateLimiter, estimate_tokens

if TYPE_CHECKING:
    from condor.llm.settings import OpenAISettings

__all__ = ["OpenAIBackend"]

_PERMANENT_5XX = frozenset({501, 505})
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})
#: Not retried (they will not change by waiting), but a sign of a wrong key, model or address.
_SETUP_ERRORS = frozenset({401, 403, 404})
# Longest server message quoted in a failed completion: enough to act on, short enough for a log line.
_MESSAGE_CHARS = 300


class _Secret:
    """Holds the API key; prints as a mask so it cannot leak through a repr, a log or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


class _Transient(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class _LoopState:
    """What must belong to the running event loop: the HTTP session and the concurrency semaphore."""

    __slots__ = ("loop", "session", "semaphore")

    def __init__(self, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession, concurrency: int) -> None:
        self.loop = loop
        self.session = session
        self.semaphore = asyncio.Semaphore(concurrency)


class OpenAIBackend(LLMBackend):
    """Chat completions from an OpenAI-compatible HTTP server.

    The server batches requests on its side (continuous batching), so the client only keeps
    ``concurrency`` requests in flight; it declares no native batching.
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
    ) -> None:
        self.base_url = base_url.rstrip("/")
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
        self.identity = f"openai:{self.base_url}:{model}"
        self.limiter = RateLimiter(requests_per_minute, tokens_per_minute)
        self._api_key = _Secret(api_key) if api_key else None
        self._url = f"{self.base_url}/chat/completions"
        self._state: _LoopState | None = None
        # Until when (time.monotonic) the server asked everyone to hold off, after a 429/503 Retry-After.
        self._hold_until = 0.0

    @classmethod
    def from_settings(cls, config: "OpenAISettings", **overrides: Any) -> "OpenAIBackend":
        """Build from validated :class:`~condor.llm.settings.OpenAISettings`; the key is read from its env var now.

        ``overrides`` (e.g. ``backoff_base``) take precedence over the settings.
        """
        kwargs: dict[str, Any] = dict(
            api_key=config.api_key(),
            concurrency=config.concurrency,
            timeout=config.timeout,
            max_retries=config.max_retries,
            requests_per_minute=config.requests_per_minute,
            tokens_per_minute=config.tokens_per_minute,
            max_tokens=config.max_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            seed=config.seed,
        )
        kwargs.update(overrides)
        return cls(config.base_url, config.model, **kwargs)

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, concurrency={self.concurrency})"

    # ------------------------------------------------------------------------------ connection

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._state
        if state is not None and state.loop is loop and not state.session.closed:
            return state
        # First use, after aclose(), or from another event loop (a second asyncio.run): a session and a
        # semaphore cannot cross loops, so make new ones. Call aclose() before leaving a loop.
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

    async def check(self) -> list[str]:
        """Make sure a server answers at ``base_url``; return the model ids it lists (possibly none).

        Any HTTP answer counts as reachable, even 401 or 404 (some servers have no ``/models``); only
        connection failures and timeouts raise :class:`BackendUnavailable`.
        """
        state = self._loop_state()
        url = f"{self.base_url}/models"
        try:
            async with state.session.get(
                url, headers=self._auth_headers(), timeout=aiohttp.ClientTimeout(total=min(self.timeout, 15.0))
            ) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            reason = self._scrub(str(exc) or type(exc).__name__)
            raise BackendUnavailable(
                f"cannot reach an OpenAI-compatible server at {self.base_url} ({reason}). "
                "Check that the server is running, that host and port are right, and that base_url ends "
                "with the API prefix (usually /v1)."
            ) from None
        except aiohttp.InvalidURL:
            raise BackendUnavailable(f"base_url {self.base_url!r} is not a valid URL") from None
        if status in (401, 403):
            raise BackendUnavailable(
                f"the server at {self.base_url} refused the API key (http {status}); check the variable named by "
                "api_key_env (--api-key-env)"
            )
        if status != 200:
            return []
        try:
            data = json.loads(body)
            models = [str(item["id"]) for item in data.get("data", []) if isinstance(item, dict) and "id" in item]
        except (ValueError, AttributeError, TypeError):
            return []
        if models and self.model not in models:
            shown = ", ".join(models[:10]) + (" ..." if len(models) > 10 else "")
            raise BackendUnavailable(f"the server at {self.base_url} does not serve model {self.model!r}; it lists: {shown}")
        return models

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
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "condor", "schema": request.json_schema, "strict": True},
            }
        return body

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Serve every request concurrently (at most ``concurrency`` in flight); completions in order."""
        if not requests:
            return []
        state = self._loop_state()
        if len(requests) == 1:
            return [await self._complete(state, requests[0])]
        tasks = [asyncio.ensure_future(self._complete(state, request)) for request in requests]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            # Only a bug or a cancellation gets here (request failures are completions): stop the rest.
            for task in tasks:
                task.cancel()
            raise

    async def _complete(self, state: _LoopState, request: ChatRequest) -> Completion:
        # The body is encoded once a slot is free, not up front: a batch of 100,000 queued requests
        # should not hold 100,000 encoded bodies. Retries reuse it.
        data = b""
        estimate = 0
        retries = 0
        while True:
            hold = self._hold_until - time.monotonic()
            if hold > 0:
                await asyncio.sleep(hold)
            try:
                async with state.semaphore:
                    if not data:
                        body = self._body(request)
                        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
                        if self.limiter.enabled:
                            estimate = estimate_tokens(request.messages, body.get("max_tokens"))
                    if self.limiter.enabled:
                        await self.limiter.acquire(estimate)
                    completion = await self._attempt(state.session, data)
            except _Transient as failure:
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

    async def _attempt(self, session: aiohttp.ClientSession, data: bytes) -> Completion:
        """One HTTP round trip: a completion (ok or permanently failed), or raises :class:`_Transient`."""
        try:
            async with session.post(self._url, data=data, headers=self._auth_headers()) as response:
                status = response.status
                raw = await response.read()
                retry_after_header = response.headers.get("Retry-After")
        except asyncio.TimeoutError:
            raise _Transient(f"timeout: no complete answer within {self.timeout:g}s") from None
        except aiohttp.InvalidURL:
            return Completion.failed(f"invalid URL {self._url!r}")
        except aiohttp.ClientConnectionError as exc:
            raise _Transient(f"connection error: {str(exc) or type(exc).__name__}") from None
        except aiohttp.ClientError as exc:  # malformed HTTP, truncated payload: the transport misbehaved
            raise _Transient(f"bad response: {str(exc) or type(exc).__name__}") from None

        if status != 200:
            message = f"http {status}: {self._scrub(_server_message(raw))}"
            if status in _RETRYABLE_4XX or (status >= 500 and status not in _PERMANENT_5XX):
                retry_after = _parse_retry_after(retry_after_header)
                if retry_after and status in (429, 503):
                    self._hold_until = max(self._hold_until, time.monotonic() + min(retry_after, self.backoff_cap))
                raise _Transient(message, retry_after)
            # A wrong key (401/403) or model name (404) is not the request's fault and fails every
            # request alike: flagged like an outage, so a run stops early and a rerun sends them again.
            return Completion.failed(message, transient=status in _SETUP_ERRORS)
        return _parse_completion(raw)


def _parse_completion(raw: bytes) -> Completion:
    try:
        data = json.loads(raw)
        choice = data["choices"][0]
        message = choice.get("message") or {}
        content = message.get("content")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise _Transient(f"invalid response body: {_snippet(raw)}") from None
    usage = data.get("usage") or {}
    completion = Completion(
        text=clean_text(content) if isinstance(content, str) else "",
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        model=data.get("model"),
    )
    # Reasoning models served by vLLM/SGLang put their thinking beside the answer; keep it, it is data.
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        completion.extra["reasoning"] = reasoning
    return completion


def _server_message(raw: bytes) -> str:
    """The human part of an error body: OpenAI's ``{"error": {"message"}}``, vLLM's ``{"message"}``,
    FastAPI's ``{"detail"}``, or the start of whatever text came back."""
    try:
        data = json.loads(raw)
    except ValueError:
        return _snippet(raw) or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return _shorten(str(error["message"]))
        for value in (error, data.get("message"), data.get("detail")):
            if value:
                return _shorten(value if isinstance(value, str) else json.dumps(value))
    return _snippet(raw)


def _snippet(raw: bytes) -> str:
    return _shorten(raw[: _MESSAGE_CHARS * 4].decode("utf-8", errors="replace"))


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 3] + "..."


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent or garbled."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())
