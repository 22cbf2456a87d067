"""What crosses the wire to an OpenAI-compatible server: the masked key, attempt outcomes, reply bodies.

Reply bodies are read with a cap (:func:`reply_limit`, from the request's ``max_tokens``): a server that
answers megabytes per reply costs one recorded failure, not the memory and the cache of the run.

Kept apart from :mod:`condor.llm.openai`, which owns the session, retries and start-up checks.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from condor.codec import decode
from condor.llm import errors
from condor.llm.base import Completion, clean_text


def endpoint(base_url: str, path: str) -> str:
    """``base_url`` + ``/path``, with the base's query (``?api-version=...``) kept after the path."""
    parts = urlsplit(base_url)
    root = urlunsplit(parts._replace(query="", fragment="")).rstrip("/")
    return f"{root}/{path}" + (f"?{parts.query}" if parts.query else "")


class Secret:
    """Holds the API key; prints as a mask so it cannot leak through a repr, a log or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


class Transient(Exception):
    """One attempt failed in a way worth retrying. ``echo`` is the status and body of an HTTP error
    that might be deterministic: the same echo twice in a row ends the retries. ``timed_out``: no
    answer came within the timeout (retried less often: a server that hangs once usually hangs again)."""

    def __init__(
        self, message: str, retry_after: float | None = None, echo: tuple[int, bytes] | None = None,
        *, timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.echo = echo
        self.timed_out = timed_out


class TooLarge(Exception):
    """A reply body longer than the cap; ``size`` is the announced length, when there was one."""

    def __init__(self, size: int | None) -> None:
        super().__init__(size)
        self.size = size


#: Reply bytes allowed per token of ``max_tokens``: a JSON-escaped CJK token or a long run of
#: whitespace stays well under it, so no honest reply comes near the cap.
REPLY_BYTES_PER_TOKEN = 64
#: Allowed on top, for the envelope (ids, usage, a reasoning model's extra fields).
REPLY_ENVELOPE_BYTES = 1 << 20
#: Tokens assumed when a request names no ``max_tokens``.
UNSTATED_MAX_TOKENS = 32_768
#: How much of an error reply, a model listing or a probe reply is read: enough for any message.
SMALL_REPLY_BYTES = 1 << 20


def reply_limit(max_tokens: int | None, configured: int | None = None) -> int:
    """The largest chat reply body accepted for a request with this ``max_tokens``."""
    if configured:
        return configured
    return REPLY_ENVELOPE_BYTES + REPLY_BYTES_PER_TOKEN * (max_tokens or UNSTATED_MAX_TOKENS)


async def read_body(response: Any, limit: int) -> bytes:
    """The whole body of an aiohttp response, in chunks; :class:`TooLarge` as soon as it passes ``limit``.

    Memory stays at ``limit`` plus one chunk however much the server sends (a gzip body is counted
    after decompression, so a compressed bomb is caught too).
    """
    announced = response.content_length
    if announced is not None and announced > limit:
        raise TooLarge(announced)
    body = bytearray()
    async for chunk in response.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            raise TooLarge(None)
    return bytes(body)


async def read_prefix(response: Any, limit: int = SMALL_REPLY_BYTES) -> bytes:
    """At most ``limit`` bytes of the body: for replies of which only the start matters (errors)."""
    body = bytearray()
    async for chunk in response.content.iter_chunked(1 << 16):
        body += chunk[: limit - len(body)]
        if len(body) >= limit:
            break
    return bytes(body)


class Refused(Exception):
    """The server will answer this request the same way every time: fail it, do not retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_completion(raw: bytes) -> Completion:
    """The completion in a chat-completions reply body; a body that is not one is a Transient failure."""
    try:
        data = decode(raw)
        choice = data["choices"][0]
        message = choice.get("message") or {}
        content = message.get("content")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise Transient(f"invalid response body: {errors.snippet(raw)}") from None
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
