"""Structured-output dialects: where each OpenAI-compatible server wants a JSON schema, and which one a server takes.

"OpenAI-compatible" stops at the schema. The same constraint is spelt:

- ``openai``: ``response_format: {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``;
  OpenAI, vLLM, SGLang, LM Studio, Ollama 0.5+ and recent llama.cpp servers read it.
- ``llama-cpp-python``: ``response_format: {"type": "json_object", "schema": ...}``; its server
  answers the ``json_schema`` type with an HTTP 500 (a validation error it does not map to 400).
- ``llama.cpp``: llama-server's top-level ``json_schema`` field (an object).
- ``vllm``: ``structured_outputs: {"json": ...}`` (vLLM 0.10.2 on); ``vllm-guided``: the older
  top-level ``guided_json``, removed in vLLM 0.12.
- ``sglang``: the top-level ``json_schema`` extra parameter, a JSON *string* (SGLang's own field; it
  refuses a request that also carries ``response_format``).
- ``ollama``: ``response_format`` as in ``openai`` (what Ollama's ``/v1`` endpoint reads) plus the
  native ``format`` field holding the schema, for gateways that pass it to Ollama's ``/api/chat``.

Each dialect is one function from a schema to the request-body fields it adds (:data:`DIALECTS`).
A server that is not told its dialect (``structured_dialect: auto``) is probed once, at start-up:
:func:`detect` sends a tiny request per candidate in :data:`PROBE_ORDER` and keeps the first whose
answer *obeys* the probe schema. "Accepted" is not enough: most servers ignore fields they do not
know (vLLM, SGLang, llama.cpp and Ollama all do), so a 200 alone proves nothing; the probe asks for
the word "hello" under a schema that only allows ``{"probe": "c0nd0r"}``, which no model writes by
chance. :func:`choose` puts it together: a configured dialect, else one an earlier run noted in the
request cache (its notes), else the probe. Left out: sending requests (the backend hands in a
``send`` coroutine) and reading error bodies (:mod:`condor.llm.errors`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from condor.llm.base import BackendUnavailable, Notes
from condor.llm.errors import ALWAYS_RETRY, model_missing, parse_retry_after, server_message

Schema = dict[str, Any]
Fields = Callable[[Schema], dict[str, Any]]


def openai_fields(schema: Schema) -> dict[str, Any]:
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "condor", "schema": schema, "strict": True}}}


def llama_cpp_python_fields(schema: Schema) -> dict[str, Any]:
    return {"response_format": {"type": "json_object", "schema": schema}}


def llama_cpp_fields(schema: Schema) -> dict[str, Any]:
    return {"json_schema": schema}


def vllm_fields(schema: Schema) -> dict[str, Any]:
    return {"structured_outputs": {"json": schema}}


def vllm_guided_fields(schema: Schema) -> dict[str, Any]:
    return {"guided_json": schema}


def sglang_fields(schema: Schema) -> dict[str, Any]:
    return {"json_schema": json.dumps(schema, ensure_ascii=False)}


def ollama_fields(schema: Schema) -> dict[str, Any]:
    return {**openai_fields(schema), "format": schema}


#: Dialect name -> the body fields that carry a schema in it.
DIALECTS: dict[str, Fields] = {
    "openai": openai_fields,
    "llama-cpp-python": llama_cpp_python_fields,
    "llama.cpp": llama_cpp_fields,
    "vllm": vllm_fields,
    "vllm-guided": vllm_guided_fields,
    "sglang": sglang_fields,
    "ollama": ollama_fields,
}
#: What ``structured_dialect: auto`` tries, in order: the standard first, then the spellings of
#: servers that do not read it. ``ollama`` is left out: on a ``/v1`` endpoint it adds nothing to
#: ``openai``, so probing it would only cost a request.
PROBE_ORDER = ("openai", "llama-cpp-python", "llama.cpp", "vllm", "vllm-guided", "sglang")

PROBE_HEADER = "X-Condor-Probe"
PROBE_SCHEMA: Schema = {
    "type": "object",
    "properties": {"probe": {"type": "string", "enum": ["c0nd0r"]}},
    "required": ["probe"],
    "additionalProperties": False,
}
# Room for {"probe": "c0nd0r"} with a grammar's optional whitespace (16 tokens from SmolLM2 under
# llama.cpp's grammar), and still cheap on any server.
PROBE_MAX_TOKENS = 48


def schema_fields(dialect: str, schema: Schema) -> dict[str, Any]:
    """The body fields that ask ``dialect``'s server for output matching ``schema``."""
    return DIALECTS[dialect](schema)


def probe_body(model: str, dialect: str | None) -> dict[str, Any]:
    """A tiny request: under ``dialect`` with the probe schema, or plain (``None``) to see the model answer."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Reply with the single word: hello"}],
        "max_tokens": PROBE_MAX_TOKENS if dialect else 1,
        "temperature": 0.0,
    }
    if dialect:
        body.update(schema_fields(dialect, PROBE_SCHEMA))
    return body


def obeyed(content: Any) -> bool:
    """Whether a probe's answer is the one document the probe schema allows."""
    if not isinstance(content, str):
        return False
    try:
        return json.loads(content) == {"probe": "c0nd0r"}
    except ValueError:
        return False


@dataclass
class ProbeReply:
    """One probe's HTTP outcome: a status and body, or the transport failure (``status`` None)."""

    status: int | None
    raw: bytes = b""
    error: str | None = None
    retry_after: str | None = None

    def content(self) -> Any:
        try:
            return json.loads(self.raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return None

    def describe(self) -> str:
        if self.status is None:
            return self.error or "no answer"
        return f"http {self.status}: {server_message(self.raw)}"


@dataclass
class Detection:
    """What the probe learnt. ``dialect`` is a name, ``"none"`` (the server constrains output in no
    dialect tried), or ``None`` when the probe could not tell (server busy, route missing): then
    nothing is remembered and the next run probes again."""

    dialect: str | None
    tried: list[str] = field(default_factory=list)
    #: Some probe got a 200: the server takes this model name.
    answered: bool = False

    @property
    def conclusive(self) -> bool:
        return self.dialect is not None

    @property
    def note(self) -> str:
        return "; ".join(self.tried)


Send = Callable[[dict[str, Any], str], Awaitable[ProbeReply]]


async def detect(send: Send, model: str, order: tuple[str, ...] = PROBE_ORDER, *, pause: float = 1.0) -> Detection:
    """Probe ``order`` with ``send(body, label)``; the first dialect whose answer obeys the schema wins.

    ``send`` raises :class:`~condor.llm.base.BackendUnavailable` itself for replies that end the run
    (a refused key, a model the server does not have). A busy server (429, 503, ...) or a broken
    connection gets one more try after ``pause`` (or its Retry-After, up to 10 s), then the probe gives
    up without a verdict. When every dialect fails, one plain request tells "no dialect works" apart
    from "this server fails everything".
    """
    detection = Detection(None)
    for dialect in order:
        reply = await _send_patiently(send, probe_body(model, dialect), dialect, pause)
        if reply.status == 200:
            detection.answered = True
            if obeyed(reply.content()):
                detection.tried.append(f"{dialect}: obeyed")
                detection.dialect = dialect
                return detection
            detection.tried.append(f"{dialect}: accepted but not obeyed")
            continue
        detection.tried.append(f"{dialect}: {reply.describe()}")
        if _inconclusive(reply):
            return detection
    plain = await _send_patiently(send, probe_body(model, None), "plain", pause)
    if plain.status == 200:
        detection.answered = True
        detection.dialect = "none"
    else:
        detection.tried.append(f"plain request: {plain.describe()}")
    return detection


def _inconclusive(reply: ProbeReply) -> bool:
    """A reply that says nothing about dialects: no answer, a busy server, or no chat route at all."""
    if reply.status is None or reply.status in ALWAYS_RETRY:
        return True
    return reply.status == 404 and not model_missing(reply.status, reply.raw)


async def _send_patiently(send: Send, body: dict[str, Any], label: str, pause: float) -> ProbeReply:
    reply = await send(body, label)
    if reply.status is None or reply.status in ALWAYS_RETRY:
        wait = parse_retry_after(reply.retry_after)
        await asyncio.sleep(min(10.0, wait if wait is not None else pause))
        reply = await send(body, label)
    return reply


@dataclass
class DialectChoice:
    """How a backend will send schemas, and how that was decided.

    ``dialect`` is a name or ``"none"``; ``source`` is ``configured``, ``cache`` (an earlier run's
    probe), ``probe`` or ``default`` (the probe could not tell, and the standard dialect is used).
    ``answered``: a chat request for this model got an answer on the way, so the model name needs no
    separate check. ``warning``: what a person should hear about it.
    """

    dialect: str
    source: str
    note: str
    answered: bool = False
    warning: str | None = None


async def choose(
    setting: str, structured: str, send: Send, model: str, notes: Notes | None, key: str, where: str
) -> DialectChoice:
    """The dialect for ``setting`` (a name, ``none`` or ``auto``). ``auto`` reads ``notes`` under ``key``,
    else probes with ``send`` and notes a conclusive answer for the next run. ``structured`` is the
    run's setting: ``off`` needs no probe, ``on`` turns "no dialect works" into an error.
    """
    if setting != "auto":
        return DialectChoice(setting, "configured", f"structured_dialect: {setting}")
    if structured == "off":
        return DialectChoice("openai", "default", "not probed (structured: off)")
    noted = notes.get_meta(key) if notes is not None else None
    if isinstance(noted, dict) and (noted.get("dialect") in DIALECTS or noted.get("dialect") == "none"):
        choice = DialectChoice(noted["dialect"], "cache", str(noted.get("note", "")), answered=True)
    else:
        detection = await detect(send, model)
        if detection.dialect is None:
            return DialectChoice(
                "openai", "default", detection.note, answered=detection.answered,
                warning=f"could not tell how the server at {where} takes JSON schemas ({detection.note}); sending "
                "them as response_format json_schema, and switching structured output off if that keeps failing",
            )
        remember(notes, key, detection.dialect, detection.note)
        choice = DialectChoice(detection.dialect, "probe", detection.note, answered=True)
    if choice.dialect == "none":
        if structured == "on":
            raise BackendUnavailable(
                f"structured: on, but the server at {where} constrained output in none of the dialects tried "
                f"({choice.note}). Set llm.structured_dialect to the one it takes (docs/servers.md), or use structured: auto"
            )
        choice.warning = f"the server at {where} does not constrain output to JSON schemas ({choice.note}); going on without"
    return choice


def remember(notes: Notes | None, key: str, dialect: str, note: str) -> None:
    if notes is not None:
        notes.put_meta(key, {"dialect": dialect, "note": note})
