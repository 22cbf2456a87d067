"""What crosses the wire to an OpenAI-compatible server: the masked key, attempt outcomes, reply bodies.

Kept apart from :mod:`condor.llm.openai`, which owns the session, retries and start-up checks.
"""

from __future__ import annotations

import json

from condor.llm import errors
from condor.llm.base import Completion, clean_text


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
    that might be deterministic: the same echo twice in a row ends the retries."""

    def __init__(self, message: str, retry_after: float | None = None, echo: tuple[int, bytes] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.echo = echo


class Refused(Exception):
    """The server will answer this request the same way every time: fail it, do not retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_completion(raw: bytes) -> Completion:
    """The completion in a chat-completions reply body; a body that is not one is a Transient failure."""
    try:
        data = json.loads(raw)
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
