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
- ``"length"``: a truncated answer with ``finish_reason: "length"``; ``"empty"``: content ``""``.

Two ways to run it: in-process (``FakeChatServer().start()``, aiohttp in a background thread with its
own event loop; the ``fake_server`` fixture in ``conftest.py`` does this), or as its own process for
benchmarks and kill/resume tests::

    python tests/fake_server.py --port 0 --latency 0.05 --fail-rate 0.05 --port-file PATH --log-file PATH

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
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from aiohttp import web

#: Transient faults a client should recover from by retrying.
TRANSIENT_FAULTS = ("429", "429-slow", "500", "502", "503", "504", "drop", "timeout", "invalid_json")
#: Faults that are not errors of the transport: the answer itself is odd.
ANSWER_FAULTS = ("length", "empty")
#: Faults a client must not retry.
PERMANENT_FAULTS = ("400", "401", "404", "422")
KNOWN_FAULTS = frozenset(TRANSIENT_FAULTS + ANSWER_FAULTS + PERMANENT_FAULTS)

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


def _words(text: str) -> int:
    return len(text.split())


class FakeChatServer:
    """An OpenAI-compatible chat server with scripted answers and injected faults.

    A responder maps the request body to the answer's content string, or to a dict with ``content`` and
    optionally ``finish_reason`` and ``usage``; a dict with ``status`` (and ``error``, the message) makes
    the server answer with that HTTP error instead. ``latency``, ``responder``, ``fail_rate``, ``fail_kinds`` and ``hang_seconds`` are plain attributes
    read on every request, so a test may change them while the server runs.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        responder: Responder | None = None,
        fail_rate: float = 0.0,
        fail_kinds: Sequence[str] = ("429", "500", "drop"),
        seed: int = 0,
        hang_seconds: float = 30.0,
        model: str = "fake-model",
        host: str = "127.0.0.1",
        port: int = 0,
        log_file: str | os.PathLike[str] | None = None,
    ) -> None:
        unknown = sorted(set(fail_kinds) - KNOWN_FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {sorted(KNOWN_FAULTS)}")
        self.latency = latency
        self.responder: Responder = responder or default_responder
        self.fail_rate = fail_rate
        self.fail_kinds = tuple(fail_kinds)
        self.hang_seconds = hang_seconds
        self.model = model
        self.host = host
        self.port = port
        self.log_file = log_file
        self.base_url = ""
        #: Every JSON body received on POST /v1/chat/completions, in arrival order. Appends happen on the
        #: server's loop thread only; list.append is atomic, so readers in the test thread are safe.
        self.request_log: list[dict] = []
        #: Headers of the most recent chat request (tests check the Authorization header).
        self.last_headers: dict[str, str] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.faults_served: collections.Counter[str] = collections.Counter()
        self._faults: collections.deque[str] = collections.deque()
        self._rng = random.Random(seed)
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
        self.request_log.append(body)
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
            return await self._answer(request, body, fault)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request, body: dict, fault: str | None) -> web.StreamResponse:
        # Rate limits and permanent errors come back at once, as real servers do; everything else
        # costs the configured latency first.
        if fault == "429":
            return _error(429, "rate limited (fake)", headers={"Retry-After": "0"})
        if fault == "429-slow":
            return _error(429, "rate limited (fake)", headers={"Retry-After": "1"})
        if fault in PERMANENT_FAULTS:
            return _error(int(fault), f"fake permanent error {fault}")
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault == "timeout":
            await asyncio.sleep(self.hang_seconds)
        elif fault == "drop":
            assert request.transport is not None
            request.transport.close()  # nothing is written after this: the client sees a disconnect
            return web.Response()
        elif fault == "invalid_json":
            return web.Response(body=b'{"choices": [ this is not json', content_type="application/json")
        elif fault is not None and fault.isdigit():
            return _error(int(fault), f"fake server error {fault}")

        produced = self.responder(body)
        if isinstance(produced, str):
            content, finish_reason, usage = produced, "stop", None
        elif "status" in produced:  # a responder may script an error answer of its own
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
        data = {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "condor-fake"}]}
        return web.json_response(data)

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": self.request_count,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "faults": dict(self.faults_served),
                "cpu_seconds": time.process_time(),
            }
        )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "fake_error", "code": status}}
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
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="fraction of requests given a random fault")
    parser.add_argument("--fail-kinds", default="429,500,drop", help="comma-separated faults for --fail-rate")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="how long the 'timeout' fault hangs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--log-file", help="append one line (hash of the messages) per request")
    parser.add_argument("--responder", help="module:function answering each request body (module on PYTHONPATH)")
    args = parser.parse_args(argv)
    responder = None
    if args.responder:
        import importlib

        module_name, _, function = args.responder.partition(":")
        responder = getattr(importlib.import_module(module_name), function)
    server = FakeChatServer(
        latency=args.latency,
        fail_rate=args.fail_rate,
        fail_kinds=[k for k in args.fail_kinds.split(",") if k],
        seed=args.seed,
        hang_seconds=args.hang_seconds,
        model=args.model,
        host=args.host,
        port=args.port,
        log_file=args.log_file,
        responder=responder,
    )
    asyncio.run(_serve_forever(server, args.port_file))


if __name__ == "__main__":
    main()
