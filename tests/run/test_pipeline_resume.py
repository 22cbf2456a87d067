"""The issue's acceptance for `condor run`: killed with SIGKILL mid-way and rerun, it ends with the same
records as an uninterrupted run, and no model request is sent twice except those in flight at the kill."""

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

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def start_server(tmp: Path, name: str) -> tuple[subprocess.Popen, str, Path]:
    port_file, log_file = tmp / f"{name}.port", tmp / f"{name}.log"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_server.py"), "--port-file", str(port_file), "--log-file",
         str(log_file), "--latency", "0.01", "--responder", "condor_responder:respond"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "tests")},
    )
    deadline = time.monotonic() + 20
    while not port_file.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "fake server did not start"
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}/v1", log_file


def condor_run(out: Path, base_url: str) -> list[str]:
    return [sys.executable, "-m", "condor.cli.main", "run", "-o", str(out), "--leaves", "20", "--rounds", "1",
            "--base-url", base_url, "--model", "fake-model", "--concurrency", "8", "--quiet"]


def dataset(out: Path) -> tuple[list[str], Counter]:
    sft = [json.loads(line)["meta"]["id"] for line in (out / "sft.jsonl").read_text().splitlines()]
    rejected = Counter(json.loads(line)["reason"] for line in (out / "rejected.jsonl").read_text().splitlines())
    return sft, rejected


def test_killed_run_resumes_to_the_same_dataset(tmp_path):
    reference_server, reference_url, _ = start_server(tmp_path, "ref")
    server, base_url, log = start_server(tmp_path, "kill")
    try:
        reference = tmp_path / "reference"
        subprocess.run(condor_run(reference, reference_url), check=True, timeout=600, capture_output=True)

        out = tmp_path / "killed"
        client = subprocess.Popen(condor_run(out, base_url))
        units = out / "stages" / "answer" / "units.jsonl"
        deadline = time.monotonic() + 300
        while not (units.exists() and units.read_bytes().count(b"\n") >= 150):
            assert client.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(client.pid, signal.SIGKILL)
        client.wait()
        assert not (out / "sft.jsonl").exists()

        resumed = subprocess.run(condor_run(out, base_url), timeout=600, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        assert dataset(out) == dataset(reference)
        sft, _ = dataset(out)
        assert len(sft) > 400  # 420 questions minus recorded rejections

        # Requests repeated across the kill: only those in flight when it happened (window = 2 x 8).
        counts = Counter(log.read_text().splitlines())
        repeated = sum(c - 1 for c in counts.values() if c > 1)
        assert repeated <= 16, repeated

        # Rerunning the finished pipeline sends nothing.
        before = len(log.read_text().splitlines())
        again = subprocess.run(condor_run(out, base_url), timeout=600, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert len(log.read_text().splitlines()) == before
    finally:
        for proc in (server, reference_server):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
