"""``condor generate`` end to end against the real local HTTP server: order, errors, cache, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_server import FakeChatServer, messages_hash
from typer.testing import CliRunner

from condor.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


def write_prompts(path: Path, n: int, extra: list[str] = ()) -> None:
    lines = [json.dumps({"id": f"p{i}", "prompt": f"prompt number {i}"}) for i in range(n)]
    path.write_text("\n".join(lines + list(extra)) + "\n", encoding="utf-8")


def read_output(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "output.jsonl").read_text(encoding="utf-8").splitlines()]


def invoke(*args: str):
    result = CliRunner().invoke(app, ["generate", *args], catch_exceptions=False)
    return result


def backend_args(server: FakeChatServer, *more: str) -> list[str]:
    return ["--base-url", server.base_url, "--model", "fake-model", "--quiet", *more]


def test_outputs_in_input_order_with_errors_recorded(tmp_path, fake_server):
    prompts = tmp_path / "prompts.jsonl"
    write_prompts(prompts, 30, extra=[
        "not json",
        json.dumps({"prompt": "no id"}),
        json.dumps({"id": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}),
        json.dumps({"id": "bad-role", "messages": [{"role": "wizard", "content": "x"}]}),
    ])
    fake_server.queue_faults("400")  # one permanent failure: recorded, not dropped
    result = invoke(str(prompts), "-o", str(tmp_path / "out"), *backend_args(fake_server))
    assert result.exit_code == 0, result.output
    rows = read_output(tmp_path / "out")
    assert len(rows) == 34
    assert [r["line"] for r in rows] == list(range(1, 35))
    assert [r["id"] for r in rows[:30]] == [f"p{i}" for i in range(30)]
    assert sum(1 for r in rows if r.get("error", "").startswith("http 400")) == 1
    ok = [r for r in rows[:30] if not r.get("error")]
    assert all(r["output"] == f"Echo: prompt number {r['line'] - 1}" for r in ok)
    assert set(ok[0]) == {"id", "line", "output", "finish_reason", "usage", "model"}
    assert set(ok[0]["usage"]) == {"prompt_tokens", "completion_tokens"}
    assert rows[30]["error"].startswith("invalid input: line 31: not valid JSON")
    assert "missing 'id'" in rows[31]["error"]
    assert rows[32]["output"] == "Echo: hi" and rows[32]["usage"]["prompt_tokens"] > 0
    assert "role 'wizard'" in rows[33]["error"]


def test_rerun_sends_no_request_and_retry_failed_resends_only_failures(tmp_path, fake_server):
    prompts = tmp_path / "prompts.jsonl"
    write_prompts(prompts, 20)
    fake_server.queue_faults("422")
    out = str(tmp_path / "out")
    assert invoke(str(prompts), "-o", out, *backend_args(fake_server)).exit_code == 0
    first = fake_server.request_count
    assert first == 20
    assert invoke(str(prompts), "-o", out, *backend_args(fake_server)).exit_code == 0
    assert fake_server.request_count == first
    assert invoke(str(prompts), "-o", out, *backend_args(fake_server, "--retry-failed")).exit_code == 0
    assert fake_server.request_count == first + 1
    rows = read_output(tmp_path / "out")
    assert len(rows) == 20 and not any(r.get("error") for r in rows)


def test_cache_serves_a_new_run_directory(tmp_path, fake_server):
    prompts = tmp_path / "prompts.jsonl"
    write_prompts(prompts, 10)
    cache = str(tmp_path / "shared.sqlite")
    invoke(str(prompts), "-o", str(tmp_path / "a"), "--cache", cache, *backend_args(fake_server))
    invoke(str(prompts), "-o", str(tmp_path / "b"), "--cache", cache, *backend_args(fake_server))
    assert fake_server.request_count == 10
    assert read_output(tmp_path / "a") == read_output(tmp_path / "b")


def test_changed_input_file_is_refused(tmp_path, fake_server):
    prompts = tmp_path / "prompts.jsonl"
    write_prompts(prompts, 3)
    invoke(str(prompts), "-o", str(tmp_path / "out"), *backend_args(fake_server))
    write_prompts(prompts, 4)
    result = CliRunner().invoke(app, ["generate", str(prompts), "-o", str(tmp_path / "out"), *backend_args(fake_server)])
    assert result.exit_code == 2
    assert "different prompts" in result.output


def test_unreachable_server_is_one_clear_line(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    write_prompts(prompts, 2)
    result = CliRunner().invoke(
        app, ["generate", str(prompts), "-o", str(tmp_path / "o"), "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]
    )
    assert result.exit_code == 2
    assert "cannot reach" in result.output and "Traceback" not in result.output


def test_missing_prompts_file_and_bad_config(tmp_path):
    result = CliRunner().invoke(app, ["generate", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o"),
                                      "--base-url", "http://127.0.0.1:9/v1", "--model", "m"])
    assert result.exit_code == 2
    config = tmp_path / "c.yaml"
    config.write_text("llm:\n  concurency: 4\n")
    result = CliRunner().invoke(app, ["generate", str(tmp_path / "x.jsonl"), "-o", str(tmp_path / "o"), "-c", str(config)])
    assert result.exit_code == 2
    assert "llm.concurency" in result.output and "Extra inputs" in result.output


def test_api_key_is_sent_but_never_written(tmp_path, fake_server, monkeypatch):
    monkeypatch.setenv("CONDOR_TEST_KEY", "sk-very-secret-123")
    prompts = tmp_path / "prompts.jsonl"
    write_prompts(prompts, 3)
    out = tmp_path / "out"
    result = invoke(str(prompts), "-o", str(out), "--api-key-env", "CONDOR_TEST_KEY", *backend_args(fake_server))
    assert result.exit_code == 0
    assert fake_server.last_headers["Authorization"] == "Bearer sk-very-secret-123"
    for path in out.rglob("*"):
        if path.is_file():
            assert b"sk-very-secret-123" not in path.read_bytes(), path


# ------------------------------------------------------------------------ acceptance, as processes


def start_server_process(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str, Path]:
    port_file, log_file = tmp_path / "port", tmp_path / "requests.log"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_server.py"), "--port-file", str(port_file),
         "--log-file", str(log_file), *args]
    )
    deadline = time.monotonic() + 20
    while not port_file.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("fake server did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}/v1", log_file


def condor_cmd(prompts: Path, out: Path, base_url: str, *more: str) -> list[str]:
    return [sys.executable, "-m", "condor.cli.main", "generate", str(prompts), "-o", str(out),
            "--base-url", base_url, "--model", "fake-model", "--quiet", *more]


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
def test_2000_prompts_with_5pct_faults_killed_and_resumed(tmp_path):
    """The issue's acceptance: 5% transient faults, SIGKILL half-way, resume; 2,000 outputs, nothing twice."""
    n = 2000
    prompts = tmp_path / "prompts.jsonl"
    write_prompts(prompts, n)
    server, base_url, log = start_server_process(tmp_path, "--latency", "0.02", "--fail-rate", "0.05",
                                                 "--fail-kinds", "429,500,503,drop")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        client = subprocess.Popen(condor_cmd(prompts, out, base_url, "--concurrency", "32"), env=env)
        units = out / "stages" / "generate" / "units.jsonl"
        deadline = time.monotonic() + 120
        while (not units.exists() or units.read_bytes().count(b"\n") < n // 2) and time.monotonic() < deadline:
            assert client.poll() is None, "client finished before it could be killed"
            time.sleep(0.02)
        os.kill(client.pid, signal.SIGKILL)
        client.wait()
        done_before = {json.loads(line)["input_id"] for line in units.read_text().splitlines() if line.endswith("}")}
        assert n // 2 <= len(done_before) < n
        requests_before = len(log_lines(log))

        finished = subprocess.run(condor_cmd(prompts, out, base_url, "--concurrency", "32"), env=env,
                                  capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr
        rows = read_output(out)
        assert len(rows) == n
        assert [r["id"] for r in rows] == [f"p{i}" for i in range(n)]
        assert not any(r.get("error") for r in rows), [r for r in rows if r.get("error")][:3]

        # No request after the kill was for an item whose unit was already written.
        done_hashes = {messages_hash([{"role": "user", "content": f"prompt number {int(i) - 1}"}]) for i in done_before}
        after = log_lines(log)[requests_before:]
        assert after and not (set(after) & done_hashes)

        # A third run is answered entirely from the run directory.
        requests_now = len(log_lines(log))
        again = subprocess.run(condor_cmd(prompts, out, base_url), env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert len(log_lines(log)) == requests_now
        assert read_output(out) == rows
        # Every prompt was answered at least once overall and none is missing.
        assert set(Counter(log_lines(log))) >= {messages_hash([{"role": "user", "content": f"prompt number {i}"}]) for i in range(n)}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


def test_server_outage_stops_cleanly_and_the_rerun_completes(tmp_path, fake_server):
    prompts = tmp_path / "prompts.jsonl"
    write_prompts(prompts, 200)
    config = tmp_path / "c.yaml"
    config.write_text("llm:\n  max_retries: 0\n  concurrency: 4\n")
    fake_server.fail_rate, fake_server.fail_kinds = 1.0, ["drop"]
    out = str(tmp_path / "out")
    result = CliRunner().invoke(app, ["generate", str(prompts), "-o", out, "-c", str(config), *backend_args(fake_server)])
    assert result.exit_code == 2 and "seems down" in result.output, result.output
    assert not (tmp_path / "out" / "output.jsonl").exists()
    sent_during_outage = fake_server.request_count
    assert sent_during_outage < 100

    fake_server.fail_rate = 0.0
    assert invoke(str(prompts), "-o", out, "-c", str(config), *backend_args(fake_server)).exit_code == 0
    rows = read_output(tmp_path / "out")
    assert len(rows) == 200 and not any(r.get("error") for r in rows)
    # Everything failed during the outage, so all 200 are sent once more, and nothing beyond that.
    assert fake_server.request_count == sent_during_outage + 200


def test_cache_key_includes_the_backends_defaults(tmp_path, fake_server):
    prompts = tmp_path / "prompts.jsonl"
    write_prompts(prompts, 3)
    cache = str(tmp_path / "shared.sqlite")
    invoke(str(prompts), "-o", str(tmp_path / "a"), "--cache", cache, "--max-tokens", "5", *backend_args(fake_server))
    invoke(str(prompts), "-o", str(tmp_path / "b"), "--cache", cache, "--max-tokens", "900", *backend_args(fake_server))
    assert fake_server.request_count == 6
    assert [b["max_tokens"] for b in fake_server.request_log] == [5, 5, 5, 900, 900, 900]


def test_half_an_emoji_from_the_model_or_the_input_is_not_a_lost_record(tmp_path, fake_server):
    fake_server.responder = lambda body: "half an emoji \ud83d here"
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": 1, "prompt": "ok"}) + "\n" + '{"id": 2, "prompt": "bad \\ud800 input"}\n')
    out = tmp_path / "out"
    assert invoke(str(prompts), "-o", str(out), *backend_args(fake_server)).exit_code == 0
    rows = read_output(out)
    assert [r.get("error") for r in rows] == [None, None]
    assert rows[0]["output"] == "half an emoji \ufffd here"
    assert fake_server.request_log[1]["messages"][0]["content"] == "bad \ufffd input"


def test_bad_per_line_options_are_recorded_for_that_line(tmp_path, fake_server):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join([
        json.dumps({"id": "a", "prompt": "x", "seed": "seven"}),
        json.dumps({"id": "b", "prompt": "y", "temperature": 9}),
        json.dumps({"id": "c", "prompt": "z", "max_tokens": 16}),
    ]) + "\n")
    assert invoke(str(prompts), "-o", str(tmp_path / "o"), *backend_args(fake_server)).exit_code == 0
    rows = read_output(tmp_path / "o")
    assert "'seed' must be a number" in rows[0]["error"] and "'temperature'" in rows[1]["error"]
    assert rows[2].get("error") is None and fake_server.request_log[0]["max_tokens"] == 16


@pytest.mark.parametrize("damage", ["file_as_output", "corrupt_unit", "manifest_not_utf8"])
def test_damaged_run_directories_are_one_line_errors(tmp_path, fake_server, damage):
    prompts = tmp_path / "prompts.jsonl"
    write_prompts(prompts, 3)
    out = tmp_path / "out"
    if damage == "file_as_output":
        out.write_text("I am a file")
    else:
        invoke(str(prompts), "-o", str(out), *backend_args(fake_server))
        (out / "stages" / "generate" / "complete.json").unlink()
        if damage == "corrupt_unit":
            with (out / "stages" / "generate" / "units.jsonl").open("a") as handle:
                handle.write("[1, 2]\n")
        else:
            (out / "manifest.json").write_bytes(b"\xff\xfe not utf-8")
    result = CliRunner().invoke(app, ["generate", str(prompts), "-o", str(out), *backend_args(fake_server)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "Traceback" not in result.output


def test_wrong_api_key_stops_the_run_and_the_fixed_rerun_completes(tmp_path, fake_server):
    prompts = tmp_path / "prompts.jsonl"
    write_prompts(prompts, 120)
    config = tmp_path / "c.yaml"
    config.write_text("llm:\n  concurrency: 4\n")
    fake_server.responder = lambda body: {"status": 401, "error": "invalid key"}
    out = str(tmp_path / "out")
    result = CliRunner().invoke(app, ["generate", str(prompts), "-o", out, "-c", str(config), *backend_args(fake_server)])
    assert result.exit_code == 2 and "http 401" in result.output and "seems down" in result.output
    assert fake_server.request_count < 60
    fake_server.responder = lambda body: "fine"
    assert invoke(str(prompts), "-o", out, "-c", str(config), *backend_args(fake_server)).exit_code == 0
    assert [r["output"] for r in read_output(tmp_path / "out")] == ["fine"] * 120


def test_credentials_in_the_url_are_refused(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    write_prompts(prompts, 1)
    result = CliRunner().invoke(app, ["generate", str(prompts), "-o", str(tmp_path / "o"), "--base-url",
                                      "http://bob:sk-LEAK99@127.0.0.1:9/v1", "--model", "m"])
    assert result.exit_code == 2 and "must not contain credentials" in result.output
    assert "sk-LEAK99" not in result.output
