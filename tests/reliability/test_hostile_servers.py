"""Broken and hostile servers through the real CLI: every call failing, replies of tens of megabytes,
a server that takes requests and never answers, and a key hidden in the URL's query.

A run that got nothing (or too little) through ends with exit code 1 and says how many items failed,
what the server said, and the exact command that sends them again; a rerun says the same.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from cli_process import condor
from condor_responder import respond
from fake_server import FakeChatServer
from typer.testing import CliRunner

from condor.cli.main import app


def write_prompts(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": i, "prompt": f"prompt {i}"}) + "\n" for i in range(n)))
    return path


def server_args(server: FakeChatServer, *more: str) -> list[str]:
    return ["--base-url", server.base_url, "--model", "fake-model", "--quiet", *more]


def always(status: int, message: str):
    return lambda body: {"status": status, "error": message}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_a_run_whose_calls_all_failed_ends_with_an_error_and_says_how_to_retry(tmp_path, fake_server):
    fake_server.responder = always(500, "upstream exploded")
    out = tmp_path / "out"
    args = ["run", "-o", str(out), "--leaves", "1", "--tasks", "view", *server_args(fake_server)]
    first = invoke(*args)
    assert first.exit_code == 1, first.output
    assert "questions: 1 of 1 items failed (100%" in first.output
    assert "http 500: upstream exploded" in first.output
    retry = "condor " + " ".join(args) + " --retry-failed"
    assert retry in first.output
    # A rerun makes no call and says the same.
    sent = fake_server.request_count
    again = invoke(*args)
    assert fake_server.request_count == sent
    assert again.exit_code == 1 and "questions: 1 of 1 items failed" in again.output and retry in again.output
    # The server recovers; the command it named sends the failed item again and the run completes.
    fake_server.responder = respond
    done = invoke(*args, "--retry-failed")
    assert done.exit_code == 0, done.output
    assert json.loads((out / "manifest.json").read_text())["stages"]["questions"]["failures"] == 0


def test_the_failure_share_is_a_setting(tmp_path, fake_server):
    fake_server.queue_faults("400")  # one permanent failure out of four prompts: 25%
    prompts = write_prompts(tmp_path, 4)
    out = tmp_path / "out"
    result = invoke("generate", str(prompts), "-o", str(out), *server_args(fake_server))
    assert result.exit_code == 1 and "generate: 1 of 4 items failed (25%; at most 10% may" in result.output
    relaxed = invoke("generate", str(prompts), "-o", str(out), *server_args(fake_server), "--max-failure-share", "0.3")
    assert relaxed.exit_code == 0, relaxed.output
    assert "warning: generate: 1 of 4 items failed" in relaxed.output and "--retry-failed" in relaxed.output


def test_generate_with_every_call_failing_exits_1(tmp_path, fake_server):
    fake_server.responder = always(503, "model is loading")
    config = tmp_path / "c.yaml"
    config.write_text("llm: {max_retries: 1}\n")
    result = invoke("generate", str(write_prompts(tmp_path, 3)), "-o", str(tmp_path / "out"), "-c", str(config),
                    *server_args(fake_server))
    assert result.exit_code == 1 and "generate: 3 of 3 items failed" in result.output
    assert "model is loading" in result.output and "--retry-failed" in result.output


def test_replies_past_the_size_cap_are_recorded_failures_in_bounded_memory(tmp_path):
    # 30 MB per reply, announced (Content-Length) by one server and streamed without a length by another.
    huge = "x" * (30 * 1024 * 1024)
    with FakeChatServer(responder=lambda body: huge) as announced, \
            FakeChatServer(fail_rate=1.0, fail_kinds=("flood",)) as streamed:
        for server in (announced, streamed):
            out = tmp_path / f"out-{server.port}"
            result = condor("generate", write_prompts(tmp_path, 4), "-o", out, "--concurrency", "4",
                            *server_args(server))
            assert result.code == 1, result.output
            assert "generate: 4 of 4 items failed" in result.output and "reply larger than 1,114,112 bytes" in result.output
            rows = [json.loads(line) for line in (out / "output.jsonl").read_text().splitlines()]
            assert all("reply larger than" in row["error"] for row in rows)
            # Not kept anywhere: the cache holds no completion, and memory stayed far below 4 x 30 MB x 2.
            with sqlite3.connect(out / "cache.sqlite") as db:
                assert db.execute("SELECT COUNT(*) FROM completions").fetchone()[0] == 0
            assert result.peak_mb < 200, result.peak_mb
        # The streaming server was cut off: all four replies together did not get as far as the end of one
        # (what was sent is mostly what the kernel's socket buffers took before the client hung up).
        assert streamed.flood_sent < streamed.flood_bytes


def test_max_reply_bytes_lets_larger_replies_through(tmp_path):
    with FakeChatServer(responder=lambda body: "y" * 2_000_000) as server:
        config = tmp_path / "c.yaml"
        config.write_text("llm: {max_reply_bytes: 4000000}\n")
        result = invoke("generate", str(write_prompts(tmp_path, 1)), "-o", str(tmp_path / "out"), "-c", str(config),
                        *server_args(server))
    assert result.exit_code == 0, result.output


@pytest.mark.timeout(120)
def test_a_server_that_never_answers_is_given_up_with_a_clear_message(tmp_path):
    # /v1/models answers; every chat request is held open for an hour.
    with FakeChatServer(fail_rate=1.0, fail_kinds=("timeout",), hang_seconds=3600) as server:
        config = tmp_path / "c.yaml"
        config.write_text("llm: {timeout: 1.5}\n")  # the default max_retries (6) stays
        result = condor("generate", write_prompts(tmp_path, 2), "-o", tmp_path / "out", "-c", config,
                        *server_args(server), timeout=60)
    assert result.code == 1, result.output
    assert "generate: 2 of 2 items failed" in result.output
    assert "no answer within 1.5s, 2 times in a row; the server took the request but did not answer" in result.output
    # Two attempts per request, not seven: well under the 7 x 1.5 s plus backoff that six retries cost.
    assert result.seconds < 25, result.seconds


@pytest.mark.parametrize("url_tail", ["?api_key=sk-test-SECRET", "?x-api-key=sk-test-SECRET", "?token=sk-test-SECRET&v=1"])
def test_a_key_in_the_url_query_is_refused_and_never_written(tmp_path, fake_server, url_tail):
    url = fake_server.base_url + url_tail
    out = tmp_path / "out"
    for args in (["generate", str(write_prompts(tmp_path, 1)), "-o", str(out)], ["run", "-o", str(out)]):
        result = invoke(*args, "--base-url", url, "--model", "fake-model")
        assert result.exit_code == 2 and "must not carry credentials in its query" in result.output
        assert "sk-test-SECRET" not in result.output
    config = tmp_path / "c.yaml"
    config.write_text(f"llm: {{base_url: '{url}', model: fake-model}}\n")
    result = invoke("run", "-o", str(out), "-c", str(config))
    assert result.exit_code == 2 and "sk-test-SECRET" not in result.output
    assert fake_server.request_count == 0
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != config]
    assert all(b"sk-test-SECRET" not in p.read_bytes() for p in written)


def test_a_query_without_credentials_is_fine(tmp_path, fake_server):
    result = invoke("generate", str(write_prompts(tmp_path, 1)), "-o", str(tmp_path / "out"),
                    "--base-url", fake_server.base_url + "?api-version=2024-06-01", "--model", "fake-model", "--quiet")
    # Accepted, and the query is kept after each endpoint's path (as Azure-style servers need it).
    assert result.exit_code == 0, result.output
    assert fake_server.request_count == 1
