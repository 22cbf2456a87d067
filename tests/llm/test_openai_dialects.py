"""Issue 8 through the real aiohttp client: model names, structured-output dialects, errors that repeat.

The fake server answers as each real server does (``FakeChatServer(dialect=...)``, written from that
server's documentation and source): where it reads a schema, what it refuses and how, how it lists
models and what it says to a name it does not serve.
"""

from __future__ import annotations

import json
import logging

import pytest
from condor_responder import respond
from typer.testing import CliRunner

from condor.cli.main import app
from condor.llm.base import BackendUnavailable, ChatRequest
from condor.llm.cache import CachedBackend, RequestCache
from condor.llm.dialects import PROBE_ORDER, DIALECTS, ProbeReply, detect, probe_body
from condor.llm.openai import SCHEMA_FAILURES_TO_SWITCH_OFF, OpenAIBackend
from condor.llm.settings import OpenAISettings
from fake_server import FakeChatServer

SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "difficulty": {"type": "integer"}},
    "required": ["question", "difficulty"],
}


def ask(text: str, **kwargs) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], max_tokens=32, **kwargs)


def backend(server: FakeChatServer, model: str, **kwargs) -> OpenAIBackend:
    options = dict(concurrency=4, timeout=5.0, max_retries=3, backoff_base=0.01)
    options.update(kwargs)
    return OpenAIBackend(server.base_url, model, **options)


@pytest.fixture
def serve():
    """``serve(**options)``: a started FakeChatServer, stopped after the test."""
    servers: list[FakeChatServer] = []

    def start(**options) -> FakeChatServer:
        servers.append(FakeChatServer(**options).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


# ------------------------------------------------------------------------------------ model names


async def test_a_server_that_lists_a_path_answers_the_short_name(serve):
    # llama-cpp-python's server lists the GGUF path it loaded and serves any model name.
    path = "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    server = serve(dialect="llama-cpp-python", model=path)
    async with backend(server, "smollm2") as llm:
        assert await llm.check() == [path]
        [completion] = await llm.generate([ask("hello")])
    assert completion.text == "Echo: hello"
    assert len(llm.warnings) == 1 and f"does not list model 'smollm2' (it lists: {path})" in llm.warnings[0]
    assert llm.describe()["warnings"] == llm.warnings and llm.describe()["models_listed"] == [path]


async def test_an_ollama_tag_answers_the_untagged_name_without_a_warning(serve):
    server = serve(dialect="ollama", model="llama3:latest")
    async with backend(server, "llama3") as llm:
        assert await llm.check() == ["llama3:latest"]
        [completion] = await llm.generate([ask("hi")])
    assert completion.text == "Echo: hi" and llm.warnings == []


@pytest.mark.parametrize("listing", ["none", "missing"])
async def test_a_server_that_lists_nothing_is_used_as_it_is(serve, listing):
    # Proxies list nothing, or have no /models at all: nothing to compare, nothing to warn about.
    server = serve(listing=listing)
    async with backend(server, "any-alias") as llm:
        assert await llm.check() == []
        [completion] = await llm.generate([ask("there?")])
    assert completion.text == "Echo: there?" and llm.warnings == []


@pytest.mark.parametrize(
    ("dialect", "listed", "asked", "words"),
    [
        ("vllm", "Qwen/Qwen2.5-7B-Instruct", "qwen", "The model `qwen` does not exist."),
        ("ollama", "llama3:latest", "mistral", 'model "mistral" not found, try pulling it first'),
        ("openai", "gpt-4o-mini", "gpt-5-nano", "model_not_found"),
    ],
)
async def test_a_server_that_says_model_not_found_stops_at_start_up(serve, dialect, listed, asked, words):
    server = serve(dialect=dialect, model=listed)
    async with backend(server, asked) as llm:
        with pytest.raises(BackendUnavailable) as info:
            await llm.check()
    message = str(info.value)
    assert f"has no model '{asked}'" in message and f"it lists: {listed}" in message and "--model" in message
    if words != "model_not_found":
        assert words in message
    assert server.request_count == 0  # stopped before any record was sent


async def test_model_not_found_names_the_empty_list_when_there_is_none(serve):
    server = serve(dialect="vllm", model="served", listing="none")
    async with backend(server, "other") as llm:
        with pytest.raises(BackendUnavailable, match=r"has no model 'other' .*it lists no models at .*/models"):
            await llm.check()


async def test_model_not_found_during_a_run_raises_rather_than_failing_each_request(serve):
    server = serve(dialect="vllm", model="served")
    async with backend(server, "gone") as llm:  # never checked: the first request finds out
        with pytest.raises(BackendUnavailable, match="The model `gone` does not exist"):
            await llm.generate([ask("a"), ask("b")])


async def test_a_configured_dialect_still_checks_an_unlisted_name(serve):
    # No probe to piggyback on: one plain request, which a vLLM server answers with its 404.
    server = serve(dialect="vllm", model="served")
    async with backend(server, "typo", structured_dialect="vllm") as llm:
        with pytest.raises(BackendUnavailable, match="has no model 'typo'"):
            await llm.check()
    assert len(server.probe_log) == 1 and server.probe_log[0]["max_tokens"] == 1


# ------------------------------------------------------------------------------------ dialect probe


@pytest.mark.parametrize(
    ("dialect", "reads", "expected"),
    [
        ("fake", None, "openai"),
        ("openai", None, "openai"),
        ("llama-cpp-python", None, "llama-cpp-python"),  # its 500 for json_schema, then json_object + schema
        ("llama.cpp", None, "openai"),  # recent llama-server reads response_format json_schema
        ("llama.cpp", ("json_schema",), "llama.cpp"),  # a build that only honours its own top-level field
        ("vllm", None, "openai"),
        ("vllm", ("structured_outputs",), "vllm"),
        ("vllm", ("guided_json",), "vllm-guided"),
        ("sglang", ("json_schema-string",), "sglang"),
        ("ollama", None, "openai"),
    ],
)
async def test_the_probe_finds_the_dialect_each_server_obeys(serve, dialect, reads, expected):
    server = serve(dialect=dialect, reads=reads, model="m")
    async with backend(server, "m") as llm:
        await llm.check()
        assert llm.dialect == expected and llm.capabilities.structured
        [completion] = await llm.generate([ask("write one", json_schema=SCHEMA)])
    # The run's schema request went out in the chosen dialect, and the server constrained the answer.
    sent = server.request_log[-1]
    assert all(sent[field] == value for field, value in DIALECTS[expected](SCHEMA).items())
    assert set(json.loads(completion.text)) == {"question", "difficulty"}
    described = llm.describe()
    assert described["structured_dialect"] == expected and described["dialect_source"] == "probe"
    assert described["dialect_note"].endswith(f"{expected}: obeyed")
    # Only the candidates up to the winner were tried, each once: a probe per dialect, no retries.
    assert len(server.probe_log) == PROBE_ORDER.index(expected) + 1


async def test_a_server_that_ignores_every_dialect_gets_no_schemas(serve, caplog):
    # A vLLM-like server that reads no schema field at all: every probe is accepted and ignored.
    server = serve(dialect="vllm", reads=(), model="m")
    async with backend(server, "m") as llm:
        with caplog.at_level(logging.WARNING, logger="condor.llm.openai"):
            await llm.check()
        assert not llm.capabilities.structured and not llm.supports_schema
        [refused, plain] = await llm.generate([ask("json please", json_schema=SCHEMA), ask("text please")])
    assert refused.error.startswith("not sent: structured output is off") and not refused.transient
    assert plain.text == "Echo: text please"
    assert [b["messages"][0]["content"] for b in server.request_log] == ["text please"]  # the schema one never left
    assert len(server.probe_log) == len(PROBE_ORDER) + 1  # every dialect, then one plain request
    assert llm.describe()["structured"] is False and llm.describe()["structured_dialect"] == "none"
    assert "does not constrain output to JSON schemas" in caplog.text


async def test_structured_on_with_no_dialect_stops_at_start_up(serve):
    server = serve(dialect="vllm", reads=(), model="m")
    async with backend(server, "m", structured="on") as llm:
        with pytest.raises(BackendUnavailable, match="structured: on, but .* none of the dialects tried"):
            await llm.check()


async def test_a_configured_dialect_is_not_probed(serve):
    server = serve(dialect="llama-cpp-python", model="m")
    async with backend(server, "m", structured_dialect="llama-cpp-python") as llm:
        await llm.check()
        [completion] = await llm.generate([ask("go", json_schema=SCHEMA)])
    assert server.probe_log == []
    assert server.request_log[0]["response_format"] == {"type": "json_object", "schema": SCHEMA}
    assert json.loads(completion.text)["difficulty"] == 1
    assert llm.describe()["dialect_source"] == "configured"


async def test_structured_off_needs_no_probe(serve):
    server = serve(dialect="llama-cpp-python", model="m")
    async with backend(server, "m", structured="off") as llm:
        await llm.check()
    assert server.probe_log == [] and llm.describe()["dialect_source"] == "default"


async def test_dialect_none_in_the_settings_turns_schemas_off(serve):
    server = serve(model="m")
    settings = OpenAISettings(base_url=server.base_url, model="m", structured_dialect="none")
    async with OpenAIBackend.from_settings(settings) as llm:
        assert not llm.capabilities.structured
        await llm.check()
    assert server.probe_log == []


async def test_the_probe_result_is_remembered_in_the_request_cache(serve, tmp_path):
    server = serve(dialect="llama-cpp-python", model="m")
    path = tmp_path / "cache.sqlite"
    first = CachedBackend(backend(server, "m"), RequestCache(path))
    async with first:
        await first.check()
        assert first.capabilities.structured and first.inner.dialect == "llama-cpp-python"
    probes = len(server.probe_log)
    assert probes == 2  # openai (500), then llama-cpp-python (obeyed)

    second = CachedBackend(backend(server, "m"), RequestCache(path))
    async with second:
        await second.check()
        [completion] = await second.generate([ask("again", json_schema=SCHEMA)])
        described = second.describe()
    assert len(server.probe_log) == probes  # not probed again
    assert described["structured_dialect"] == "llama-cpp-python" and described["dialect_source"] == "cache"
    assert server.request_log[-1]["response_format"]["type"] == "json_object" and completion.ok

    # Another server identity (model name) is probed afresh.
    third = CachedBackend(backend(server, "other-name"), RequestCache(path))
    async with third:
        await third.check()
    assert len(server.probe_log) == probes + 2


def test_the_dialect_reaches_the_manifest_of_a_cli_run(serve, tmp_path):
    server = serve(dialect="llama-cpp-python", model="/models/smol.gguf")
    server.responder = respond
    out = tmp_path / "out"
    args = ["run", "-o", str(out), "--base-url", server.base_url, "--model", "smol", "--leaves", "1",
            "--tasks", "domain_qa", "--rounds", "1", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["stages"]["questions"]["backend"]
    assert entry["structured_dialect"] == "llama-cpp-python" and entry["dialect_source"] == "probe"
    assert any("does not list model 'smol'" in w for w in entry["warnings"])
    # The rerun reads the dialect from the run's cache: no second probe.
    probes = len(server.probe_log)
    assert CliRunner().invoke(app, args).exit_code == 0
    assert len(server.probe_log) == probes


async def test_detect_gives_no_verdict_for_a_busy_or_broken_server():
    sent: list[str] = []

    def sender(replies):
        async def send(body, label):
            sent.append(label)
            return replies(label)
        return send

    busy = await detect(sender(lambda label: ProbeReply(503, b'{"error": "Loading model"}')), "m", pause=0)
    assert busy.dialect is None and sent == ["openai", "openai"]  # one patient retry, then no verdict
    sent.clear()
    broken = await detect(sender(lambda label: ProbeReply(500, b'{"error": "boom"}')), "m", pause=0)
    assert broken.dialect is None and sent == [*PROBE_ORDER, "plain"]  # every dialect fails and so does plain text
    assert "plain request: http 500: boom" in broken.note
    sent.clear()
    gone = await detect(sender(lambda label: ProbeReply(None, error="ClientConnectorError: refused")), "m", pause=0)
    assert gone.dialect is None and not gone.answered


def test_probe_bodies_are_tiny():
    plain = probe_body("m", None)
    assert plain["max_tokens"] == 1 and "response_format" not in plain
    for dialect in DIALECTS:
        assert probe_body("m", dialect)["max_tokens"] <= 64


# ------------------------------------------------------------------------------------ errors that repeat


async def test_the_same_500_twice_is_not_retried(fake_server):
    fake_server.responder = lambda body: {"status": 500, "error": "Internal error: tensor shape mismatch"}
    async with backend(fake_server, "m") as llm:
        [completion] = await llm.generate([ask("x")])
    assert not completion.ok and not completion.transient and completion.retries == 1
    assert completion.error.startswith("http 500: Internal error: tensor shape mismatch (not retried: ")
    assert fake_server.request_count == 2


async def test_a_500_that_changes_is_retried(fake_server):
    calls = []

    def flaky(body):
        calls.append(1)
        return {"status": 500, "error": f"worker {len(calls)} crashed"} if len(calls) < 3 else "fine"

    fake_server.responder = flaky
    async with backend(fake_server, "m") as llm:
        [completion] = await llm.generate([ask("x")])
    assert completion.text == "fine" and completion.retries == 2


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_overload_and_rate_limits_are_retried_however_alike(fake_server, status):
    calls = []

    def busy(body):
        calls.append(1)
        return {"status": status, "error": "server busy, try later"} if len(calls) < 4 else "done"

    fake_server.responder = busy
    async with backend(fake_server, "m", max_retries=5) as llm:
        [completion] = await llm.generate([ask("x")])
    assert completion.text == "done" and completion.retries == 3


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (500, "1 validation error: response_format.type Input should be 'text' or 'json_object'"),
        (400, "extra fields not permitted"),
        (500, "Unsupported parameter: 'seed'"),
        (422, "Unrecognized request argument supplied: guided_json"),
    ],
)
async def test_an_error_naming_an_unsupported_field_fails_at_once(fake_server, status, words):
    fake_server.responder = lambda body: {"status": status, "error": words}
    async with backend(fake_server, "m") as llm:
        [completion] = await llm.generate([ask("x")])
    assert not completion.ok and not completion.transient and completion.retries == 0
    assert fake_server.request_count == 1


async def test_transport_faults_stay_transient(fake_server):
    fake_server.queue_faults("drop", "drop", "drop", "drop")
    async with backend(fake_server, "m", max_retries=3) as llm:
        [completion] = await llm.generate([ask("x")])
    # Connection failures are never "the same answer twice": retried to the end, and flagged for the
    # outage breaker.
    assert completion.error.startswith("connection error:") and completion.transient and completion.retries == 3


async def test_a_failing_dialect_is_switched_off_not_retried_on_every_record(serve, caplog):
    # llama-cpp-python's server told to use the OpenAI spelling: a 500 naming response_format each time.
    server = serve(dialect="llama-cpp-python", model="m")
    async with backend(server, "m", structured_dialect="openai", concurrency=1) as llm:
        with caplog.at_level(logging.WARNING, logger="condor.llm.openai"):
            failed = await llm.generate([ask(f"q{i}", json_schema=SCHEMA) for i in range(SCHEMA_FAILURES_TO_SWITCH_OFF)])
        assert all(not c.ok and not c.transient and c.retries == 0 for c in failed)
        assert not llm.capabilities.structured
        [skipped, plain] = await llm.generate([ask("more", json_schema=SCHEMA), ask("plain")])
    assert skipped.error.startswith("not sent: structured output is off") and plain.text == "Echo: plain"
    assert server.request_count == SCHEMA_FAILURES_TO_SWITCH_OFF + 1  # the skipped one never left
    assert "structured output is off" in caplog.text and "switched off after 3 schema requests" in caplog.text


async def test_a_dialect_switched_off_mid_run_is_remembered(fake_server, tmp_path):
    # The probe passes (the server constrains short documents) but the run's schemas break it, the
    # same way each time: switched off after three records, and the next run starts without them.
    def model(body):
        if body.get("response_format"):
            return {"status": 500, "error": "Internal error: KV cache slot lost"}
        return "Echo"

    fake_server.responder = model
    path = tmp_path / "cache.sqlite"
    first = CachedBackend(backend(fake_server, "fake-model", concurrency=1), RequestCache(path))
    async with first:
        await first.check()
        assert first.capabilities.structured
        await first.generate([ask(f"q{i}", json_schema=SCHEMA) for i in range(3)])
        assert not first.capabilities.structured  # read through the cache wrapper, not copied
    assert fake_server.request_count == 6  # each schema request: the 500, then the same 500 again

    second = CachedBackend(backend(fake_server, "fake-model"), RequestCache(path))
    async with second:
        await second.check()
        assert not second.capabilities.structured and second.describe()["dialect_source"] == "cache"
