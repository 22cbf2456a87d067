"""Reading an OpenAI-compatible server's error replies: what the server said, and what kind of failure it is.

Servers word their errors in their own way, so the classification here works on the words of the
reply body, not on a vendor's error codes:

- :func:`model_missing`: the server says it has no model of that name (vLLM's "The model `x` does not
  exist.", Ollama's "model 'x' not found, try pulling it first", OpenAI's ``model_not_found``,
  LiteLLM's "Invalid model name"). A bare 404 is *not* enough: a wrong URL prefix gives one too,
  and only the server's own words say that the name, not the address, is wrong.
- :func:`names_unsupported_field`: the body names a request field or says a feature is unsupported
  ("response_format", "json_schema", "not supported", "extra fields not permitted", "unrecognized").
  Sending the same request again would get the same answer, so it is never retried.
- :data:`ALWAYS_RETRY`: statuses that mean "later", whatever the body says (429 rate limits, 503
  overload or a model still loading, 502/504 gateways, 408); a repeated body there is no sign of a
  deterministic error. Connection errors and timeouts are retried the same way by the backend.
- :data:`MAYBE_TRANSIENT`: 500 and the other 5xx but 501/505, 409, 425: retried, unless the same status
  and body come back twice in a row (a server that repeats itself word for word is not having a
  passing fault). Injected test faults and most real transient errors differ from one to the next.
- :data:`SETUP_ERRORS`: 401, 403, 404 without the server's "model not found" words: not retried, and
  flagged like an outage, since they fail every request alike. Any other 4xx is simply permanent.

It also extracts the human part of an error body (:func:`server_message`), reads the ids of a
``/models`` reply, parses ``Retry-After``, and words the start-up failures a person must act on.
Left out: deciding what to do about a failure (retry, fail, switch a feature off); that is the
backend's business (:mod:`condor.llm.openai`).
"""

from __future__ import annotations

import json
import re
import time
from email.utils import parsedate_to_datetime

#: Retried however often the same body comes back: the server asked for time, not for another request.
ALWAYS_RETRY = frozenset({408, 429, 502, 503, 504})
#: Worth retrying once: the failure may be passing (a crashed worker, a lost race) or deterministic;
#: the same body twice in a row says which.
MAYBE_TRANSIENT = frozenset({409, 425}) | frozenset(range(500, 600)) - {501, 505} - ALWAYS_RETRY
#: Not retried (they will not change by waiting), but a sign of a wrong key, model or address.
SETUP_ERRORS = frozenset({401, 403, 404})
# Longest server message quoted in a failed completion: enough to act on, short enough for a log line.
MESSAGE_CHARS = 300

_MODEL_MISSING = re.compile(
    r"model\b[^.\n]{0,120}?\b(not found|does not exist|doesn't exist|is not available|not loaded)"
    r"|\b(unknown|invalid|no such) model\b|model_not_found|no models? (are )?loaded"
)
_UNSUPPORTED = re.compile(
    r"response_format|json_schema|guided_json|structured_outputs|guided_decoding|grammar"
    r"|unsupported|not supported|extra fields not permitted|extra inputs are not permitted|extra_forbidden"
    r"|unrecognized|unknown (field|parameter|argument)"
)


def _text(raw: bytes) -> str:
    return raw[:20_000].decode("utf-8", errors="replace").lower()


def model_missing(status: int, raw: bytes) -> bool:
    """Whether a 4xx reply says, in the server's words, that the requested model does not exist."""
    return 400 <= status < 500 and status != 429 and bool(_MODEL_MISSING.search(_text(raw)))


def names_unsupported_field(status: int, raw: bytes) -> bool:
    """Whether an error reply says the request used a field or feature this server does not take."""
    return status not in ALWAYS_RETRY and bool(_UNSUPPORTED.search(_text(raw)))


def server_message(raw: bytes) -> str:
    """The human part of an error body: OpenAI's ``{"error": {"message"}}``, vLLM's ``{"message"}``,
    FastAPI's ``{"detail"}``, or the start of whatever text came back."""
    try:
        data = json.loads(raw)
    except ValueError:
        return snippet(raw) or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return shorten(str(error["message"]))
        for value in (error, data.get("message"), data.get("detail")):
            if value:
                return shorten(value if isinstance(value, str) else json.dumps(value))
    return snippet(raw)


def listed_models(raw: bytes) -> list[str]:
    """The model ids of a ``/models`` reply (``{"data": [{"id": ...}]}``); none for any other body."""
    try:
        data = json.loads(raw)
        return [str(item["id"]) for item in data.get("data", []) if isinstance(item, dict) and "id" in item]
    except (ValueError, AttributeError, TypeError):
        return []


def show_models(models: list[str], limit: int = 10) -> str:
    return ", ".join(models[:limit]) + (" ..." if len(models) > limit else "")


def snippet(raw: bytes) -> str:
    return shorten(raw[: MESSAGE_CHARS * 4].decode("utf-8", errors="replace"))


def shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


def parse_retry_after(value: str | None) -> float | None:
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


def unreachable(base_url: str, reason: str) -> str:
    return (
        f"cannot reach an OpenAI-compatible server at {base_url} ({reason}). Check that the server is running, "
        "that host and port are right, and that base_url ends with the API prefix (usually /v1)."
    )


def key_refused(base_url: str, status: int) -> str:
    return f"the server at {base_url} refused the API key (http {status}); check the variable named by api_key_env (--api-key-env)"


def no_such_model(base_url: str, model: str, models: list[str], status: int, said: str) -> str:
    """The server said ``model`` does not exist: what it said, and the names it does list."""
    if models:
        listed = f"it lists: {show_models(models)}. Pass one of those with --model (llm.model in a config file)"
    else:
        listed = f"it lists no models at {base_url}/models; check the name the server was started with"
    return f"the server at {base_url} has no model {model!r} (http {status}: {said}); {listed}"
