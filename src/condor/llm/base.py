"""The one interface every chat backend implements, and the value types that cross it.

A backend turns a batch of :class:`ChatRequest` into the same number of :class:`Completion`, in order.
Permanent failures of a single request (a 400, retries exhausted, a timeout after every retry) come back
as a completion with ``error`` set, never as an exception, so a batch never loses its other items.
Only a backend that cannot work at all (no server at the address, no model file) raises
:class:`BackendUnavailable`, which the CLI turns into a one-line message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Protocol, Sequence, TypeVar

T = TypeVar("T")


_SURROGATE = re.compile("[\ud800-\udfff]")


class BackendUnavailable(RuntimeError):
    """The backend cannot serve any request (unreachable server, missing model file, missing extra)."""


@dataclass(slots=True)
class ChatRequest:
    """One chat-completion request, independent of the backend that will serve it.

    ``sample_index`` tells apart requests that are otherwise identical but must give distinct samples
    (best-of-n, several critiques): it is part of the cache key, and backends derive a per-sample seed
    from it when ``seed`` is set. ``priority`` is a scheduling hint, never sent nor part of the cache
    key: when requests wait for a backend's free slot, lower priorities go first
    (:mod:`condor.llm.slots`).
    """

    messages: list[dict[str, str]]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = None
    json_schema: dict[str, Any] | None = None
    sample_index: int = 0
    priority: int = 0

    def payload(self) -> dict[str, Any]:
        """The canonical, JSON-serialisable content of the request (what the cache key hashes)."""
        out: dict[str, Any] = {"messages": self.messages}
        for name in ("max_tokens", "temperature", "top_p", "seed", "stop", "json_schema"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.sample_index:
            out["sample_index"] = self.sample_index
        return out

    def effective_seed(self) -> int | None:
        """The seed to send: distinct per sample so that n samples with one seed still differ."""
        if self.seed is None:
            return None
        return self.seed + self.sample_index


@dataclass(slots=True)
class Usage:
    """Token counts, added up per stage for the manifest."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    cached: int = 0
    failures: int = 0
    retries: int = 0

    def add(self, completion: "Completion") -> None:
        self.requests += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.retries += completion.retries
        if completion.cached:
            self.cached += 1
        if completion.error is not None:
            self.failures += 1

    def merge(self, other: "Usage") -> None:
        for name in self.__slots__:  # type: ignore[attr-defined]
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


@dataclass(slots=True)
class Completion:
    """The outcome of one request: text and usage, or the reason it failed."""

    text: str | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    cached: bool = False
    retries: int = 0
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: The failure was transport-level (connection, timeout, 5xx) after every retry: the server, not
    #: the request, is the likely problem, so a later run may well succeed.
    transient: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "error": self.error,
            "model": self.model,
        }

    @classmethod
    def failed(cls, error: str, retries: int = 0, transient: bool = False) -> "Completion":
        return cls(text=None, error=error, retries=retries, transient=transient)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, declared by the backend so that executors never guess from its name.

    - ``structured``: requests may carry ``json_schema`` (constrained decoding or ``response_format``).
    - ``schema_first``: constrained output is cheap and the model needs it (a small local model behind a
      grammar), so in ``structured: auto`` the first attempt already asks for the schema.
    - ``native_batching`` / ``max_batch``: one ``generate`` call runs many requests together (an
      in-process engine such as vLLM or transformers), so the executor should hand it requests from
      many records at once, up to ``max_batch``. Servers batch on their side and need no such help.
    - ``max_context``: the context window in tokens, when known.
    """

    structured: bool = False
    schema_first: bool = False
    native_batching: bool = False
    max_batch: int = 1
    max_context: int | None = None


class Notes(Protocol):
    """Small facts about a server kept between runs (the request cache's meta table), by key.

    Values are JSON-serialisable; a key should start with the backend's identity, since one cache
    file may serve several backends.
    """

    def get_meta(self, key: str) -> Any | None: ...

    def put_meta(self, key: str, value: Any) -> None: ...


class LLMBackend(ABC):
    """A chat model. Subclasses implement :meth:`generate`; everything else has a default.

    ``identity`` names the model as far as caching is concerned (backend kind and model name, or model
    file): two backends with the same identity give interchangeable answers. It must never contain a
    secret.
    """

    identity: str = "unknown"
    capabilities: Capabilities = Capabilities()
    #: How many requests the backend wants in flight; executors size their windows from it.
    concurrency: int = 1

    @property
    def supports_schema(self) -> bool:
        """Whether requests may carry ``json_schema`` (shorthand for ``capabilities.structured``)."""
        return self.capabilities.structured

    @abstractmethod
    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Serve every request; return one completion per request, in the same order."""

    async def check(self) -> None:
        """Make sure the backend can serve at all (server reachable, key accepted, model known).

        Raises :class:`BackendUnavailable` with a message a person can act on; called once before a run.
        """

    def use_notes(self, notes: Notes) -> None:
        """Somewhere to keep what :meth:`check` learns about the server, so a later run need not learn it again.

        The request cache wrapper calls this before :meth:`check` (the openai backend keeps its
        structured-output dialect there). Optional: by default the notes are ignored.
        """

    async def warm_up(self) -> None:
        """Load whatever is slow to load (model weights) so that load errors surface before a run."""

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this backend: identity and anything learnt at start-up."""
        return {"identity": self.identity}

    def resolve(self, request: ChatRequest) -> ChatRequest:
        """The request as it will be sent, with the backend's default sampling settings filled in.

        The request cache keys on this, so that changing a default (``--max-tokens``, the config's
        ``seed``) never returns answers made under the old one.
        """
        return request

    async def aclose(self) -> None:
        """Release connections, threads or model memory."""

    async def __aenter__(self) -> "LLMBackend":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def clean_text(text: str) -> str:
    """``text`` with lone surrogates (half an emoji from a JSON escape) replaced by U+FFFD.

    Such strings cannot be encoded as UTF-8, so they could be neither sent nor written; every text
    entering Condor from a server or an input file passes through here.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        # In a Python str every surrogate code point is a lone one (pairs decode to one character).
        return _SURROGATE.sub("\ufffd", text)


def with_defaults(
    request: ChatRequest,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> ChatRequest:
    """``request`` with unset sampling fields taken from a backend's defaults."""
    return replace(
        request,
        max_tokens=request.max_tokens if request.max_tokens is not None else max_tokens,
        temperature=request.temperature if request.temperature is not None else temperature,
        top_p=request.top_p if request.top_p is not None else top_p,
        seed=request.seed if request.seed is not None else seed,
    )


async def gather_or_cancel(coroutines: Sequence[Awaitable[T]]) -> list[T]:
    """Await all of ``coroutines`` as tasks, in order; if one raises (or the caller is cancelled), cancel
    the rest before the error goes on, so no request keeps running for a caller that is gone."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def keep_warning(warnings: list[str], message: str, limit: int = 20) -> bool:
    """Add ``message`` to a backend's ``warnings`` (which the manifest shows) unless it is there already
    or ``limit`` are kept; whether it was added."""
    if message in warnings or len(warnings) >= limit:
        return False
    warnings.append(message)
    return True


def request_key(identity: str, request: ChatRequest) -> str:
    """A stable hash of model identity plus canonical request: the cache key."""
    # The standard library's exact bytes (not condor.codec's): caches written earlier must still match.
    blob = _KEY_ENCODER.encode({"model": identity, "request": request.payload()})
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


#: Built once: ``json.dumps`` with options builds an encoder per call.
_KEY_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
