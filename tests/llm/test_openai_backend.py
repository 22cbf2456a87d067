"""OpenAIBackend against a real local HTTP server: answers, every fault path, limits and secrets."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from condor.config import OpenAISettings
from condor.llm.base import BackendUnavailable, ChatRequest
from condor.llm.limits import RateLimiter, TokenBucket, estimate_tokens
from condor.llm.openai import OpenAIBackend, _parse_retry_after
from fake_server import FakeChatServer, messages_hash

SECRET = "sk-test-DO-NOT-LEAK-1234567890"


def ask(text: str, **kwargs) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kwargs)


def make_backend(server: FakeChatServer, **kwargs) -> OpenAIBackend:
    # Tiny backoff base so retried tests stay fast; Retry-After still sets a floor on the delay.
    options = dict(concurrency=8, timeout=5.0, max_retries=3, backoff_base=0.01, max_tokens=64, temperature=0.5)
    options.update(kwargs)
    return OpenAIBackend(server.base_url, "test-model", **options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------ answers


async def test_answers_in_order_with_usage_and_defaults(fake_server):
    async with make_backend(fake_server) as backend:
        completions = await backend.generate([ask(f"question {i}") for i in range(5)])
    assert [c.text for c in completions] == [f"Echo: question {i}" for i in range(5)]
    assert all(c.ok and c.finish_reason == "stop" and c.retries == 0 for c in completions)
    assert completions[0].prompt_tokens == 2 and completions[0].completion_tokens == 3
    assert completions[0].model == "test-model"
    body = fake_server.request_log[0]
    assert body["model"] == "test-model"
    assert body["max_tokens"] == 64 and body["temperature"] == 0.5
    # None means "server default": not sent at all.
    assert "top_p" not in body and "seed" not in body and "stop" not in body and "response_format" not in body


async def test_request_settings_override_backend_defaults(fake_server):
    async with make_backend(fake_server, top_p=0.9) as backend:
        await backend.generate([ask("x", max_tokens=7, temperature=0.0, top_p=0.5, stop=["\n\n"])])
    body = fake_server.request_log[0]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["stop"]) == (7, 0.0, 0.5, ["\n\n"])


async def test_from_config_reads_key_from_env(fake_server, monkeypatch):
    monkeypatch.setenv("CONDOR_TEST_KEY", SECRET)
    config = OpenAISettings(
        backend="openai", base_url=fake_server.base_url, model="cfg-model", api_key_env="CONDOR_TEST_KEY",
        concurrency=3, max_tokens=11, temperature=0.2, seed=5,
    )
    backend = OpenAIBackend.from_settings(config, backoff_base=0.01)
    assert backend.concurrency == 3 and backend.identity == "openai:cfg-model"
    async with backend:
        [completion] = await backend.generate([ask("hello")])
    assert completion.text == "Echo: hello"
    body = fake_server.request_log[0]
    assert (body["model"], body["max_tokens"], body["temperature"], body["seed"]) == ("cfg-model", 11, 0.2, 5)
    assert fake_server.last_headers["Authorization"] == f"Bearer {SECRET}"


async def test_empty_batch_and_reuse_after_aclose(fake_server):
    backend = make_backend(fake_server)
    assert await backend.generate([]) == []
    await backend.generate([ask("a")])
    await backend.aclose()
    # A closed backend opens a fresh session on next use rather than failing.
    [again] = await backend.generate([ask("b")])
    await backend.aclose()
    assert again.text == "Echo: b"


# ------------------------------------------------------------------------------------ faults


@pytest.mark.parametrize("fault", ["429", "500", "502", "503", "504", "drop", "invalid_json"])
async def test_recovers_from_transient_fault(fake_server, fault):
    fake_server.queue_faults(fault)
    async with make_backend(fake_server) as backend:
        [completion] = await backend.generate([ask("survive")])
    assert completion.ok and completion.text == "Echo: survive"
    assert completion.retries == 1
    assert fake_server.request_count == 2
    assert fake_server.faults_served[fault] == 1


async def test_recovers_from_timeout(fake_server):
    fake_server.hang_seconds = 10.0
    fake_server.queue_faults("timeout")
    started = time.monotonic()
    async with make_backend(fake_server, timeout=0.3) as backend:
        [completion] = await backend.generate([ask("slow")])
    assert completion.ok and completion.retries == 1
    assert 0.3 <= time.monotonic() - started < 3.0


async def test_retry_after_is_honoured(fake_server):
    fake_server.queue_faults("429-slow")  # Retry-After: 1
    started = time.monotonic()
    async with make_backend(fake_server, backoff_base=0.001) as backend:
        [completion] = await backend.generate([ask("patience")])
    waited = time.monotonic() - started
    assert completion.ok and completion.retries == 1
    assert 1.0 <= waited < 3.0


async def test_retry_after_pauses_the_other_requests_too(fake_server):
    fake_server.queue_faults("429-slow")
    async with make_backend(fake_server, concurrency=1, backoff_base=0.001) as backend:
        started = time.monotonic()
        first = asyncio.ensure_future(backend.generate([ask("first")]))
        await asyncio.sleep(0.2)  # the 429 has arrived; this one must respect the server's pause as well
        [second] = await backend.generate([ask("second")])
        second_done = time.monotonic() - started
        await first
    assert second.ok and second.retries == 0
    assert second_done >= 0.95


def test_retry_after_formats():
    assert _parse_retry_after("2") == 2.0
    assert _parse_retry_after("0.5") == 0.5
    assert _parse_retry_after(None) is None
    assert _parse_retry_after("soon") is None
    in_ten = _parse_retry_after(formatdate(time.time() + 10, usegmt=True))
    assert in_ten is not None and 8.0 <= in_ten <= 10.5
    assert _parse_retry_after(formatdate(time.time() - 100, usegmt=True)) == 0.0


@pytest.mark.parametrize("status", ["400", "401", "404", "422"])
async def test_permanent_errors_fail_at_once(fake_server, status):
    fake_server.queue_faults(status)
    async with make_backend(fake_server) as backend:
        [completion, other] = await backend.generate([ask("bad"), ask("good")])
    assert not completion.ok and completion.text is None
    assert completion.error == f"http {status}: fake permanent error {status}"
    assert completion.retries == 0
    assert other.ok  # one bad request never costs the rest of the batch
    assert fake_server.request_count == 2


async def test_retries_exhausted_reports_last_error(fake_server):
    fake_server.queue_faults("500", "503", "500")
    async with make_backend(fake_server, max_retries=2) as backend:
        [completion] = await backend.generate([ask("doomed")])
    assert not completion.ok
    assert completion.error == "http 500: fake server error 500 (gave up after 2 retries)"
    assert completion.retries == 2
    assert fake_server.request_count == 3


async def test_random_faults_all_recovered(fake_server):
    fake_server.fail_rate = 0.3
    fake_server.fail_kinds = ("429", "500", "503", "drop", "invalid_json")
    async with make_backend(fake_server, max_retries=10) as backend:
        completions = await backend.generate([ask(f"q{i}") for i in range(60)])
    assert [c.text for c in completions] == [f"Echo: q{i}" for i in range(60)]
    assert sum(c.retries for c in completions) == fake_server.request_count - 60 > 0


async def test_length_and_empty_pass_through(fake_server):
    fake_server.queue_faults("length", "empty")
    async with make_backend(fake_server, concurrency=1) as backend:
        truncated, empty = await backend.generate([ask("a long question here"), ask("nothing")])
    assert truncated.ok and truncated.finish_reason == "length" and truncated.retries == 0
    assert "Echo: a long question here".startswith(truncated.text) and truncated.text
    assert empty.ok and empty.text == "" and empty.retries == 0


async def test_responder_dict_and_null_content(fake_server):
    fake_server.responder = lambda body: {"content": None, "finish_reason": "tool_calls", "usage": {}}
    async with make_backend(fake_server) as backend:
        [completion] = await backend.generate([ask("x")])
    assert completion.text == "" and completion.finish_reason == "tool_calls"
    assert completion.prompt_tokens == 0


# ------------------------------------------------------------------------------------ request shape


async def test_schema_sent_as_response_format(fake_server):
    schema = {
        "type": "object",
        "properties": {
            "question": {"type": "string"},
            "difficulty": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["question", "difficulty", "tags"],
    }
    async with make_backend(fake_server) as backend:
        assert backend.supports_schema
        [completion] = await backend.generate([ask("write one", json_schema=schema)])
    sent = fake_server.request_log[0]["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "condor", "schema": schema, "strict": True}}
    answer = json.loads(completion.text)
    assert set(answer) == {"question", "difficulty", "tags"}
    assert isinstance(answer["question"], str) and isinstance(answer["difficulty"], int)
    assert answer["tags"] and all(isinstance(t, str) for t in answer["tags"])


async def test_string_bounds_a_small_budget_cannot_hold_are_fitted_in_what_is_sent(fake_server):
    schema = {"type": "object", "properties": {name: {"type": "string", "minLength": 5, "maxLength": 700}
                                               for name in ("strengths", "weaknesses")},
              "required": ["strengths", "weaknesses"]}
    async with make_backend(fake_server, max_tokens=2048) as backend:
        await backend.generate([ask("review", json_schema=schema, max_tokens=100), ask("review", json_schema=schema)])
    sent = {body["max_tokens"]: body["response_format"]["json_schema"]["schema"] for body in fake_server.request_log}
    tight, roomy = sent[100], sent[2048]
    assert [value["maxLength"] for value in tight["properties"].values()] == [126, 126]  # (100 - 4 - 2 x 6) x 3 / 2
    assert roomy == schema and schema["properties"]["strengths"]["maxLength"] == 700


async def test_seed_plus_sample_index_gives_distinct_seeds(fake_server):
    requests = [ask("same", seed=7, sample_index=i) for i in range(3)]
    requests += [ask("same", sample_index=i) for i in range(2)]  # falls back to the backend's seed
    async with make_backend(fake_server, seed=100, concurrency=1) as backend:
        await backend.generate(requests)
    assert [body["seed"] for body in fake_server.request_log] == [7, 8, 9, 100, 101]


async def test_concurrency_bound_holds_across_calls(fake_server):
    fake_server.latency = 0.02
    async with make_backend(fake_server, concurrency=8) as backend:
        batches = await asyncio.gather(
            backend.generate([ask(f"a{i}") for i in range(60)]),
            backend.generate([ask(f"b{i}") for i in range(60)]),
        )
    assert all(c.ok for batch in batches for c in batch)
    assert fake_server.max_in_flight == 8


# ------------------------------------------------------------------------------------ reachability


async def test_unreachable_server_raises_backend_unavailable():
    port = free_port()
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff_base=0.01)
    try:
        with pytest.raises(BackendUnavailable) as info:
            await backend.check()
        message = str(info.value)
        assert f"http://127.0.0.1:{port}/v1" in message and "server is running" in message
        # Generation itself does not raise: each request fails with the connection error as data.
        [completion] = await backend.generate([ask("anyone?")])
        assert completion.error.startswith("connection error:") and completion.retries == 1
    finally:
        await backend.aclose()


async def test_check_accepts_any_http_answer(fake_server):
    async with OpenAIBackend(fake_server.base_url, "fake-model") as backend:
        assert await backend.check() == ["fake-model"]
    # No /models under this prefix: a 404 still proves a server is there.
    other = OpenAIBackend(fake_server.base_url.replace("/v1", "/nothing"), "m")
    async with other:
        assert await other.check() == []


async def test_check_warns_about_a_model_the_server_does_not_list(fake_server):
    # Until issue 8 this refused to start. The fake server answers any name, as llama-cpp-python's
    # server and many proxies do, so an unlisted name is only a warning now; a server that itself
    # says "model not found" still stops the run (test_openai_dialects.py).
    async with OpenAIBackend(fake_server.base_url, "no-such-model") as backend:
        assert await backend.check() == ["fake-model"]
        [completion] = await backend.generate([ask("still answered")])
    assert completion.text == "Echo: still answered"
    assert backend.warnings == [
        f"the server at {fake_server.base_url} does not list model 'no-such-model' (it lists: fake-model); going on, "
        "since many servers answer names they do not list"
    ]
    assert backend.describe()["warnings"] == backend.warnings


async def test_wrong_key_or_model_fails_like_an_outage(fake_server):
    fake_server.responder = lambda body: {"status": 401, "error": "bad key"}
    async with make_backend(fake_server) as backend:
        [completion] = await backend.generate([ask("x")])
    assert completion.error.startswith("http 401") and completion.transient and completion.retries == 0


# ------------------------------------------------------------------------------------ secrets


async def test_api_key_sent_but_never_shown(fake_server):
    # A server that echoes the rejected key, as some do.
    fake_server.responder = lambda body: {"status": 401, "error": f"Incorrect API key provided: {SECRET}"}
    backend = make_backend(fake_server, api_key=SECRET)
    async with backend:
        [completion] = await backend.generate([ask("x")])
    assert fake_server.last_headers["Authorization"] == f"Bearer {SECRET}"
    assert completion.error.startswith("http 401: Incorrect API key provided")
    for shown in (completion.error, backend.identity, repr(backend), str(backend), repr(vars(backend))):
        assert SECRET not in shown


async def test_no_key_no_authorization_header(fake_server):
    async with make_backend(fake_server) as backend:
        await backend.generate([ask("x")])
    assert "Authorization" not in fake_server.last_headers


# ------------------------------------------------------------------------------------ rate limits


async def test_requests_per_minute_slows_a_burst(fake_server):
    # 600/min = 10/s with one second of burst (10 requests): 25 requests need about 1.5 s.
    async with make_backend(fake_server, concurrency=32, requests_per_minute=600) as backend:
        started = time.monotonic()
        completions = await backend.generate([ask(f"r{i}") for i in range(25)])
        elapsed = time.monotonic() - started
    assert all(c.ok for c in completions)
    assert 1.35 <= elapsed < 4.0


async def test_tokens_per_minute_slows_a_burst(fake_server):
    # 60,000 tokens/min = 1,000/s with 1,000 of burst; each request is estimated at 101 tokens
    # (4 characters of prompt + max_tokens 100), so 30 requests (3,030 tokens) need about 2 s.
    async with make_backend(fake_server, concurrency=32, tokens_per_minute=60_000) as backend:
        started = time.monotonic()
        completions = await backend.generate([ask(f"t{i:03d}", max_tokens=100) for i in range(30)])
        elapsed = time.monotonic() - started
    assert all(c.ok for c in completions)
    assert 1.8 <= elapsed < 4.5


async def test_token_bucket_reserves_in_order():
    bucket = TokenBucket(60 * 100, burst_seconds=0.1)  # 100/s, 10 of burst
    assert bucket.reserve(10) == 0.0
    assert bucket.reserve(5) == pytest.approx(0.05, abs=0.01)
    assert bucket.reserve(5) == pytest.approx(0.10, abs=0.01)  # queued behind the previous reservation
    bucket.give_back(10)
    assert bucket.level <= bucket.capacity


async def test_disabled_limiter_is_free():
    limiter = RateLimiter()
    assert not limiter.enabled
    started = time.monotonic()
    for _ in range(1000):
        await limiter.acquire(10_000)
    assert time.monotonic() - started < 0.1
    assert estimate_tokens([{"role": "user", "content": "x" * 40}], 10) == 20


# ------------------------------------------------------------------------------------ fake server process


async def test_fake_server_runs_as_a_process(tmp_path: Path):
    port_file, log_file = tmp_path / "port", tmp_path / "requests.log"
    script = Path(__file__).resolve().parents[1] / "fake_server.py"
    process = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--port-file", str(port_file), "--log-file", str(log_file)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 15
        while not port_file.exists():
            assert process.poll() is None and time.monotonic() < deadline, "fake server did not start"
            await asyncio.sleep(0.05)
        base_url = f"http://127.0.0.1:{port_file.read_text()}/v1"
        async with OpenAIBackend(base_url, "m") as backend:
            completions = await backend.generate([ask("one"), ask("two"), ask("one", sample_index=1)])
        assert [c.text for c in completions] == ["Echo: one", "Echo: two", "Echo: one"]
        lines = log_file.read_text().split()
        one = messages_hash([{"role": "user", "content": "one"}])
        assert sorted(lines) == sorted([one, one, messages_hash([{"role": "user", "content": "two"}])])
    finally:
        process.terminate()
        process.wait(timeout=10)
