"""A real OpenAI-compatible chat server on 127.0.0.1 for Condor's tests and benchmarks.

It speaks just enough of the API for Condor's clients: ``POST /v1/chat/completions`` (non-streaming) and
``GET /v1/models``, plus ``GET /_fake/stats`` (request count, in-flight high-water mark, server CPU
seconds) so that benchmarks can tell whether the server or the client was the bottleneck.

Answers are deterministic: by default ``"Echo: <last user message>"``, or, when the request carries a
``response_format`` JSON schema, a JSON document that satisfies simple schemas (objects with string,
number, integer, boolean, enum and array properties). Faults are scripted with :meth:`queue_faults`
or injected at random with ``fail_rate`` (seeded), so that every retry path of a client can be driven:

- ``"429"`` (Retry-After: 0), ``"429-slow"`` (Retry-After: 1), ``"500"``, ``"502"``, ``"503"``, ``"504"``,
  and permanent ``"400"``, ``"401"``, ``"404"``, ``"422"``: that status with an OpenAI-style error body;
- ``"drop"``: the connection is closed without any response;
- ``"timeout"``: the server sits on the request for ``hang_seconds`` before answering;
- ``"invalid_json"``: status 200 with a body that is not JSON;
- ``"length"``: a truncated answer with ``finish_reason: "length"``; ``"empty"``: content ``""``;
- ``"flood"``: status 200 and a reply body streamed without a length, ``flood_bytes`` long (a hostile
  or broken server that never stops talking).

``dialect=`` makes it answer as a particular real server does, as that server's documentation and source
describe it (:data:`SERVER_PROFILES`): where it reads a JSON schema from (``response_format`` json_schema,
llama-cpp-python's ``json_object`` + ``schema``, llama-server's top-level ``json_schema``, vLLM's
``structured_outputs``, SGLang's ``json_schema`` string), which fields it refuses and with what status
and body (llama-cpp-python: HTTP 500 for a ``json_schema`` response_format), how it lists models, and
what it says to a model name it does not serve. Fields a server does not know are ignored, as most real
servers do. ``reads=`` and ``listing=`` (``"one"``, ``"none"``, ``"missing"``: 404 on ``/v1/models``)
override a profile's defaults. The default profile, ``"fake"``, is the original behaviour.

Requests marked with the ``X-Condor-Probe`` header (Condor's start-up probes) are answered like any
other, but kept apart in ``probe_log``: they are not in ``request_log`` or the log file, never get a
scripted or random fault, and are answered by the schema sampler rather than the responder (a server
that constrains output gives a schema-valid answer whatever the model), so tests that count or script
a run's requests see only the run's.

Two ways to run it: in-process (``FakeChatServer().start()``, aiohttp in a background thread with its
own event loop; the ``fake_server`` fixture in ``conftest.py`` does this), or as its own process for
benchmarks and kill/resume tests::

    python tests/fake_server.py --port 0 --latency 0.05 --fail-rate 0.05 --port-file PATH --log-file PATH

``--latency-sigma S`` makes latency heavy-tailed, as real generation is (a reply's time grows with its
length, and lengths vary over orders of magnitude): each answer then takes a lognormal time whose mean
is still ``--latency`` and whose log has standard deviation S (S = 1: median 0.61x the mean, one answer
in a hundred over 6x). ``/_fake/stats`` reports the latencies actually drawn and when the first request
came and the last answer left, so that a benchmark can compare its rate with the ideal one.

(``--responder module:function`` swaps in a scripted model, e.g. ``condor_responder:respond``.)

It leaves out streaming, tool calls, ``n > 1`` and authentication (it records the Authorization header
for tests to look at, but accepts anything). It never logs per request to stdout: it is benchmarked.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from aiohttp import web

#: Transient faults a client should recover from by retrying.
TRANSIENT_FAULTS = ("429", "429-slow", "500", "502", "503", "504", "drop", "timeout", "invalid_json")
#: Faults that are not errors of the transport: the answer itself is odd.
ANSWER_FAULTS = ("length", "empty")
#: Faults a client must not retry.
PERMANENT_FAULTS = ("400", "401", "404", "422")
#: Faults of a server that misbehaves on purpose.
HOSTILE_FAULTS = ("flood",)
KNOWN_FAULTS = frozenset(TRANSIENT_FAULTS + ANSWER_FAULTS + PERMANENT_FAULTS + HOSTILE_FAULTS)

Responder = Callable[[dict], "str | dict"]


def messages_hash(messages: Any) -> str:
    """The short hash written to ``--log-file`` for each request, so tests can count requests per prompt."""
    blob = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def last_user_message(body: dict) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def sample_for_schema(schema: Any, hint: str, name: str = "value") -> Any:
    """A value satisfying a simple JSON schema; strings are derived from ``hint`` so answers vary by prompt."""
    if not isinstance(schema, dict):
        return hint
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            return sample_for_schema(schema[combinator][0], hint, name)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):  # e.g. ["string", "null"]: take the first non-null type
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {key: sample_for_schema(sub, hint, key) for key, sub in properties.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [sample_for_schema(schema.get("items", {}), f"{hint} {i + 1}", name) for i in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.0))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = f"{name}: {hint}".strip()
    if "maxLength" in schema:
        text = text[: int(schema["maxLength"])]
    if len(text) < int(schema.get("minLength", 0)):
        text = text.ljust(int(schema["minLength"]), ".")
    return text


def default_responder(body: dict) -> str:
    """``Echo: <last user message>``, or a JSON document matching the requested schema."""
    user = last_user_message(body)
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return json.dumps(sample_for_schema(schema, user[:80]), ensure_ascii=False)
    return f"Echo: {user}"


def common_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of two byte strings (binary search over memoryview compares,
    which copy nothing)."""
    x, y = memoryview(a), memoryview(b)
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if x[:mid] == y[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _words(text: str) -> int:
    return len(text.split())


# --------------------------------------------------------------------------------- server profiles

#: Where a server finds a schema in a request body; each returns the schema or None.
SCHEMA_READERS: dict[str, Callable[[dict], Any]] = {
    "openai": lambda b: _rf(b).get("json_schema", {}).get("schema") if _rf(b).get("type") == "json_schema" else None,
    "json_object+schema": lambda b: _rf(b).get("schema") if _rf(b).get("type") == "json_object" else None,
    "json_schema": lambda b: b.get("json_schema") if isinstance(b.get("json_schema"), dict) else None,
    "json_schema-string": lambda b: json.loads(b["json_schema"]) if isinstance(b.get("json_schema"), str) else None,
    "structured_outputs": lambda b: (b.get("structured_outputs") or {}).get("json"),
    "guided_json": lambda b: b.get("guided_json"),
}


def _rf(body: dict) -> dict:
    value = body.get("response_format")
    return value if isinstance(value, dict) else {}


def _rf_type_not_in(body: dict, allowed: tuple[str, ...]) -> str | None:
    kind = _rf(body).get("type")
    return kind if "response_format" in body and kind not in allowed else None


def _refuse_openai(body: dict) -> tuple[int, dict] | None:
    known = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop",
             "response_format", "n", "stream", "user", "tools", "tool_choice", "logprobs", "presence_penalty",
             "frequency_penalty", "logit_bias"}
    extra = sorted(set(body) - known)
    if extra:
        return 400, {"error": {"message": f"Unrecognized request argument supplied: {extra[0]}",
                               "type": "invalid_request_error", "param": None, "code": None}}
    kind = _rf_type_not_in(body, ("text", "json_object", "json_schema"))
    if kind is not None:
        return 400, {"error": {"message": f"Invalid value: '{kind}'. Supported values are: 'json_object', "
                               "'json_schema', and 'text'.", "type": "invalid_request_error",
                               "param": "response_format.type", "code": "invalid_value"}}
    return None


def _refuse_llama_cpp_python(body: dict) -> tuple[int, dict] | None:
    # Its server turns a request validation error into an HTTP 500 (seen with 0.3.36).
    kind = _rf_type_not_in(body, ("text", "json_object"))
    if kind is None:
        return None
    detail = (f"1 validation error:\n  {{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
              f"'msg': \"Input should be 'text' or 'json_object'\", 'input': '{kind}'}}")
    return 500, {"error": {"message": detail, "type": "internal_server_error", "param": None, "code": None}}


def _refuse_llama_cpp(body: dict) -> tuple[int, dict] | None:
    kind = _rf_type_not_in(body, ("text", "json_object", "json_schema"))
    if kind is not None:
        message = f'response_format type must be one of "text" or "json_object", but got: {kind}'
    elif body.get("grammar") and body.get("json_schema"):
        message = 'Either "json_schema" or "grammar" can be specified, but not both'
    else:
        return None
    return 400, {"error": {"code": 400, "message": message, "type": "invalid_request_error"}}


def _refuse_vllm(body: dict) -> tuple[int, dict] | None:
    kind = _rf_type_not_in(body, ("text", "json_object", "json_schema", "structural_tag"))
    if kind is None:
        return None
    message = f"1 validation error for ChatCompletionRequest\nresponse_format.type\n  Input should be 'text', " \
              f"'json_object', 'json_schema' or 'structural_tag' [type=literal_error, input_value='{kind}']"
    return 400, {"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}}


def _refuse_sglang(body: dict) -> tuple[int, dict] | None:
    kind = _rf_type_not_in(body, ("text", "json_object", "json_schema"))
    if kind is not None:
        return 400, {"object": "error", "message": f"Input should be 'text', 'json_object' or 'json_schema': {kind}",
                     "type": "BadRequestError", "param": None, "code": 400}
    constraints = [_rf(body).get("type") == "json_schema", "json_schema" in body, "regex" in body, "ebnf" in body]
    if sum(constraints) > 1:
        return 400, {"object": "error", "message": "Only one of regex, json_schema, or ebnf can be set.",
                     "type": "BadRequestError", "param": None, "code": 400}
    return None


@dataclass(frozen=True)
class ServerProfile:
    """How one real server treats structured-output fields and model names.

    ``reads``: :data:`SCHEMA_READERS` it honours, in order; ``json_mode``: a ``json_object``
    response_format without a schema it reads gives unconstrained JSON; ``refuse``: its validation
    errors as (status, body); ``unknown_model``: (status, body with ``{model}``) for a name it does not
    serve, or None if it answers any name; ``tags``: an untagged name means ``name:latest`` (Ollama).
    """

    reads: tuple[str, ...] = ("openai",)
    json_mode: bool = True
    refuse: Callable[[dict], "tuple[int, dict] | None"] = lambda body: None
    unknown_model: "tuple[int, dict] | None" = None
    tags: bool = False
    owned_by: str = "condor-fake"


SERVER_PROFILES: dict[str, ServerProfile] = {
    "fake": ServerProfile(json_mode=False),
    "openai": ServerProfile(
        refuse=_refuse_openai, owned_by="openai",
        unknown_model=(404, {"error": {"message": "The model `{model}` does not exist or you do not have access to it.",
                                       "type": "invalid_request_error", "param": None, "code": "model_not_found"}}),
    ),
    "llama-cpp-python": ServerProfile(reads=("json_object+schema",), refuse=_refuse_llama_cpp_python, owned_by="me"),
    "llama.cpp": ServerProfile(
        reads=("json_schema", "json_object+schema", "openai"), refuse=_refuse_llama_cpp, owned_by="llamacpp"
    ),
    "vllm": ServerProfile(
        reads=("openai", "structured_outputs"), refuse=_refuse_vllm, owned_by="vllm",
        unknown_model=(404, {"error": {"message": "The model `{model}` does not exist.", "type": "NotFoundError",
                                       "param": None, "code": 404}}),
    ),
    "sglang": ServerProfile(reads=("openai", "json_schema-string"), refuse=_refuse_sglang, owned_by="sglang"),
    "ollama": ServerProfile(
        tags=True, owned_by="library",
        unknown_model=(404, {"error": {"message": 'model "{model}" not found, try pulling it first',
                                       "type": "not_found_error", "param": None, "code": None}}),
    ),
}


class FakeChatServer:
    """An OpenAI-compatible chat server with scripted answers and injected faults.

    A responder maps the request body to the answer's content string, or to a dict with ``content`` and
    optionally ``finish_reason`` and ``usage``; a dict with ``status`` (and ``error``, the message) makes
    the server answer with that HTTP error instead. ``latency``, ``latency_sigma``, ``delay``, ``responder``, ``fail_rate``, ``fail_kinds`` and ``hang_seconds`` are plain attributes
    read on every request, so a test may change them while the server runs.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        latency_sigma: float = 0.0,
        delay: Callable[[dict], float] | None = None,
        prefix_window: int = 8,
        responder: Responder | None = None,
        fail_rate: float = 0.0,
        fail_kinds: Sequence[str] = ("429", "500", "drop"),
        seed: int = 0,
        hang_seconds: float = 30.0,
        model: str = "fake-model",
        host: str = "127.0.0.1",
        port: int = 0,
        log_file: str | os.PathLike[str] | None = None,
        dialect: str = "fake",
        reads: Sequence[str] | None = None,
        listing: str = "one",
    ) -> None:
        unknown = sorted(set(fail_kinds) - KNOWN_FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {sorted(KNOWN_FAULTS)}")
        if dialect not in SERVER_PROFILES:
            raise ValueError(f"unknown dialect {dialect!r}; known: {sorted(SERVER_PROFILES)}")
        if listing not in ("one", "none", "missing"):
            raise ValueError(f"listing must be one, none or missing, not {listing!r}")
        profile = SERVER_PROFILES[dialect]
        if reads is not None:
            unknown = sorted(set(reads) - set(SCHEMA_READERS))
            if unknown:
                raise ValueError(f"unknown schema reader(s) {unknown}; known: {sorted(SCHEMA_READERS)}")
            profile = replace(profile, reads=tuple(reads))
        #: How this server treats schemas and model names (see SERVER_PROFILES).
        self.dialect = dialect
        self.profile = profile
        self.listing = listing
        self.latency = latency
        self.latency_sigma = latency_sigma
        #: Extra seconds a request waits before its answer, chosen from its body (a test slows one down).
        self.delay = delay
        #: Seconds of latency drawn so far and for how many answers; first request in, last answer out.
        self.latency_drawn = 0.0
        self.latency_count = 0
        self.first_request_at: float | None = None
        #: For each request, in arrival order, the longest prompt prefix (UTF-8 bytes) it shares with one of
        #: the ``prefix_window`` requests that arrived just before it: how often a server's prefix cache
        #: would find the start of a prompt still warm.
        self.prefix_window = prefix_window
        self.shared_prefix: list[int] = []
        self.prompt_bytes: list[int] = []
        self._recent_prompts: collections.deque[bytes] = collections.deque(maxlen=prefix_window)
        self.last_answer_at: float | None = None
        self.responder: Responder = responder or default_responder
        self.fail_rate = fail_rate
        self.fail_kinds = tuple(fail_kinds)
        self.hang_seconds = hang_seconds
        #: How many bytes the "flood" fault streams before it stops.
        self.flood_bytes = 64 * 1024 * 1024
        #: Bytes of flood actually written (the client hangs up long before the end, if it is careful).
        self.flood_sent = 0
        self.model = model
        self.host = host
        self.port = port
        self.log_file = log_file
        self.base_url = ""
        #: Every JSON body received on POST /v1/chat/completions, in arrival order. Appends happen on the
        #: server's loop thread only; list.append is atomic, so readers in the test thread are safe.
        self.request_log: list[dict] = []
        #: Bodies of requests marked as Condor start-up probes, apart from the run's (see the module doc).
        self.probe_log: list[dict] = []
        #: Headers of the most recent chat request (tests check the Authorization header).
        self.last_headers: dict[str, str] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.faults_served: collections.Counter[str] = collections.Counter()
        self._faults: collections.deque[str] = collections.deque()
        self._rng = random.Random(seed)
        # Its own generator, so that the latencies drawn do not shift which requests get random faults.
        self._latency_rng = random.Random(seed + 1)
        self._log_handle: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    # ----------------------------------------------------------------------------------- control

    @property
    def request_count(self) -> int:
        return len(self.request_log)

    def queue_faults(self, *faults: str) -> None:
        """Apply these faults, in order, to the next requests (before any random ``fail_rate`` fault)."""
        unknown = sorted(set(faults) - KNOWN_FAULTS)
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {sorted(KNOWN_FAULTS)}")
        self._faults.extend(faults)  # deque.extend is thread-safe against popleft on the server loop

    def reset_stats(self) -> None:
        """Forget the request log and the in-flight high-water mark (between phases of one test)."""
        self.request_log.clear()
        self.faults_served.clear()
        self.shared_prefix.clear()
        self.prompt_bytes.clear()
        self._recent_prompts.clear()
        self.max_in_flight = self.in_flight

    def start(self) -> "FakeChatServer":
        """Serve from a background thread; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("FakeChatServer already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve_start())
            except BaseException as exc:  # surface bind errors in the caller's thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._serve_stop())
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-chat-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> "FakeChatServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------- serving

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_fake/stats", self._stats)
        return app

    async def _serve_start(self) -> None:
        # handler_cancellation: when a client gives up (the "timeout" fault), stop sleeping at once, so
        # that stop() does not wait for hung handlers. No access log: this server is benchmarked.
        self._runner = web.AppRunner(
            self.make_app(), access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.base_url = f"http://{self.host}:{self.port}/v1"
        if self.log_file is not None:
            # Line-buffered append: every request is on disk before its answer is sent, so a test can
            # count requests per prompt even when the client is killed mid-run.
            self._log_handle = open(self.log_file, "a", buffering=1, encoding="utf-8")

    async def _serve_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def _next_fault(self) -> str | None:
        try:
            return self._faults.popleft()
        except IndexError:
            pass
        if self.fail_rate and self._rng.random() < self.fail_rate:
            return self._rng.choice(self.fail_kinds)
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "request body is not valid JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' must be a list")
        if request.headers.get("X-Condor-Probe"):
            self.probe_log.append(body)
            verdict, understood = self._as_server(body, probe=True)
            return verdict if verdict is not None else self._reply(understood, default_responder(understood), None)
        self.request_log.append(body)
        if self.first_request_at is None:
            self.first_request_at = time.time()
        self._note_prefix(body["messages"])
        self.last_headers = dict(request.headers)
        if self._log_handle is not None:
            self._log_handle.write(messages_hash(body["messages"]) + "\n")
        fault = self._next_fault()
        if fault is not None:
            self.faults_served[fault] += 1
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight
        try:
            verdict, understood = self._as_server(body, probe=False)
            if verdict is not None:
                return verdict
            return await self._answer(request, understood, fault)
        finally:
            self.in_flight -= 1
            self.last_answer_at = time.time()

    def _as_server(self, body: dict, *, probe: bool) -> tuple[web.Response | None, dict]:
        """The profile's verdict on ``body``: an error (or JSON-mode) reply, or None; and the body as the
        server understood it, the schema it read put as ``response_format`` json_schema (or no schema)."""
        profile = self.profile
        refused = profile.refuse(body)
        if refused is not None:
            return _json_reply(*refused), body
        if profile.unknown_model is not None and not self._serves(str(body.get("model", ""))):
            status, template = profile.unknown_model
            return _json_reply(status, json.loads(json.dumps(template).replace("{model}", str(body.get("model"))))), body
        if self.dialect == "fake":
            return None, body  # the original behaviour: the responder sees the body as sent
        schema = next((found for name in profile.reads if (found := SCHEMA_READERS[name](body)) is not None), None)
        json_mode = profile.json_mode and _rf(body).get("type") == "json_object" and schema is None
        understood = {k: v for k, v in body.items() if k not in ("response_format", "json_schema", "structured_outputs", "guided_json", "format")}
        if schema is not None:
            understood["response_format"] = {"type": "json_schema", "json_schema": {"name": "read", "schema": schema}}
        elif json_mode and (probe or self.responder is default_responder):
            # JSON mode without a schema: some JSON object, not the one a schema would force.
            return self._reply(understood, json.dumps({"answer": last_user_message(body)}), None), understood
        return None, understood

    def _note_prefix(self, messages: list) -> None:
        prompt = "\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages if isinstance(m, dict)).encode()
        self.shared_prefix.append(max((common_prefix(prompt, other) for other in self._recent_prompts), default=0))
        self.prompt_bytes.append(len(prompt))
        self._recent_prompts.append(prompt)

    def _draw_latency(self) -> float:
        delay = self.latency
        if self.latency_sigma > 0:
            # Lognormal with the configured mean: E[exp(N(mu, s^2))] = exp(mu + s^2 / 2).
            mu = math.log(self.latency) - self.latency_sigma**2 / 2
            delay = self._latency_rng.lognormvariate(mu, self.latency_sigma)
        self.latency_drawn += delay
        self.latency_count += 1
        return delay

    def _serves(self, name: str) -> bool:
        return name == self.model or (self.profile.tags and f"{name}:latest" == self.model)

    async def _answer(self, request: web.Request, body: dict, fault: str | None) -> web.StreamResponse:
        # Rate limits and permanent errors come back at once, as real servers do; everything else
        # costs the configured latency first.
        # Each injected fault's body carries its own request id, as real servers' error bodies often do:
        # a client that takes the same body twice for a deterministic error must not take these so.
        tag = {"request_id": f"fake-{sum(self.faults_served.values())}"}
        if fault == "429":
            return _error(429, "rate limited (fake)", headers={"Retry-After": "0"}, extra=tag)
        if fault == "429-slow":
            return _error(429, "rate limited (fake)", headers={"Retry-After": "1"}, extra=tag)
        if fault in PERMANENT_FAULTS:
            return _error(int(fault), f"fake permanent error {fault}", extra=tag)
        if self.latency:
            await asyncio.sleep(self._draw_latency())
        if self.delay is not None:
            await asyncio.sleep(self.delay(body))
        if fault == "timeout":
            await asyncio.sleep(self.hang_seconds)
        elif fault == "drop":
            assert request.transport is not None
            request.transport.close()  # nothing is written after this: the client sees a disconnect
            return web.Response()
        elif fault == "flood":
            return await self._flood(request)
        elif fault == "invalid_json":
            return web.Response(body=b'{"choices": [ this is not json', content_type="application/json")
        elif fault is not None and fault.isdigit():
            return _error(int(fault), f"fake server error {fault}", extra=tag)
        return self._reply(body, self.responder(body), fault)

    async def _flood(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"x" * (1 << 16)
        await response.write(b'{"choices": [{"message": {"content": "')
        try:
            while self.flood_sent < self.flood_bytes:
                await response.write(chunk)
                self.flood_sent += len(chunk)
        except (ConnectionError, RuntimeError):
            return response  # the client hung up: what a careful client does
        await response.write(b'"}, "finish_reason": "stop"}]}')
        await response.write_eof()
        return response

    def _reply(self, body: dict, produced: "str | dict", fault: str | None) -> web.Response:
        if isinstance(produced, str):
            content, finish_reason, usage = produced, "stop", None
        elif "status" in produced:  # a responder may script an error answer of its own (the same every time)
            return _error(int(produced["status"]), str(produced.get("error", "scripted error")))
        else:
            content = produced.get("content", "")
            finish_reason = produced.get("finish_reason", "stop")
            usage = produced.get("usage")
        if fault == "length":
            content, finish_reason = content[: max(1, len(content) // 2)], "length"
        elif fault == "empty":
            content = ""
        if usage is None:
            prompt_words = sum(
                _words(m.get("content") or "") for m in body["messages"] if isinstance(m, dict) and isinstance(m.get("content"), str)
            )
            usage = {"prompt_tokens": prompt_words, "completion_tokens": _words(content or "")}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        payload = {
            "id": f"chatcmpl-fake-{len(self.request_log)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish_reason,
                }
            ],
            "usage": usage,
        }
        return web.Response(body=json.dumps(payload).encode("utf-8"), content_type="application/json")

    async def _models(self, request: web.Request) -> web.Response:
        if self.listing == "missing":
            return web.Response(status=404, text="404: Not Found")
        listed = [] if self.listing == "none" else [{"id": self.model, "object": "model", "owned_by": self.profile.owned_by}]
        return web.json_response({"object": "list", "data": listed})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": self.request_count,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "faults": dict(self.faults_served),
                "cpu_seconds": time.process_time(),
                "latency_mean": self.latency_drawn / self.latency_count if self.latency_count else None,
                "first_request_at": self.first_request_at,
                "last_answer_at": self.last_answer_at,
                "shared_prefix": self.shared_prefix if request.query.get("prefix") else None,
                "prompt_bytes": self.prompt_bytes if request.query.get("prefix") else None,
            }
        )


def _error(status: int, message: str, headers: dict[str, str] | None = None, extra: dict | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "fake_error", "code": status, **(extra or {})}}
    return _json_reply(status, body, headers)


def _json_reply(status: int, body: dict, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode("utf-8"), content_type="application/json", headers=headers
    )


# --------------------------------------------------------------------------------- as a process


async def _serve_forever(server: FakeChatServer, port_file: str | None) -> None:
    await server._serve_start()
    if port_file:
        # Write then rename, so a reader polling for the file never sees a partial port number.
        tmp = Path(f"{port_file}.tmp")
        tmp.write_text(str(server.port), encoding="utf-8")
        os.replace(tmp, port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server._serve_stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake OpenAI-compatible chat server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (see --port-file)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer (the mean, with --latency-sigma)")
    parser.add_argument("--latency-sigma", type=float, default=0.0,
                        help="heavy-tailed latency: lognormal with mean --latency and this sigma (0: fixed)")
    parser.add_argument("--prefix-window", type=int, default=8,
                        help="stats: longest prefix each prompt shares with one of this many requests before it")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="fraction of requests given a random fault")
    parser.add_argument("--fail-kinds", default="429,500,drop", help="comma-separated faults for --fail-rate")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="how long the 'timeout' fault hangs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--log-file", help="append one line (hash of the messages) per request")
    parser.add_argument("--responder", help="module:function answering each request body (module on PYTHONPATH)")
    parser.add_argument("--dialect", default="fake", choices=sorted(SERVER_PROFILES), help="answer as this server does")
    args = parser.parse_args(argv)
    responder = None
    if args.responder:
        import importlib

        module_name, _, function = args.responder.partition(":")
        responder = getattr(importlib.import_module(module_name), function)
    server = FakeChatServer(
        latency=args.latency,
        latency_sigma=args.latency_sigma,
        prefix_window=args.prefix_window,
        fail_rate=args.fail_rate,
        fail_kinds=[k for k in args.fail_kinds.split(",") if k],
        seed=args.seed,
        hang_seconds=args.hang_seconds,
        model=args.model,
        host=args.host,
        port=args.port,
        log_file=args.log_file,
        responder=responder,
        dialect=args.dialect,
    )
    asyncio.run(_serve_forever(server, args.port_file))


if __name__ == "__main__":
    main()
