"""A real OpenAI-compatible server that no one here wrote: llama-cpp-python's own, on the shipped SmolLM2.

The ``llama_server`` fixture starts ``python -m llama_cpp.server`` on 127.0.0.1 (a free port), with two
threads and a 2048-token context, once per test module, and stops it afterwards, so that it never
competes for the CPU with the embedded-model tests that load llama.cpp in-process. Everything the server
prints (uvicorn's access log among it) goes to a file, so a test can count the HTTP statuses the
server itself reports. Skipped when ``llama-cpp-python[server]`` is not installed.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

# uvicorn's access log: INFO:     127.0.0.1:49684 - "POST /v1/chat/completions HTTP/1.1" 500 Internal Server Error
_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})\b')
_START_SECONDS = 120.0


@dataclass
class LlamaServer:
    """A running llama-cpp-python server: where it listens and what it logged."""

    base_url: str
    model_path: str
    log_path: Path
    process: subprocess.Popen

    def statuses(self, path: str = "/v1/chat/completions") -> list[int]:
        """The HTTP status of every request to ``path`` so far, from the server's own access log."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return [int(m["status"]) for m in _ACCESS_LINE.finditer(text) if m["path"] == path]

    def server_errors(self) -> int:
        """How many 5xx replies the server has logged, to any path."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return sum(1 for m in _ACCESS_LINE.finditer(text) if m["status"].startswith("5"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory) -> Iterator[LlamaServer]:
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server] (the test extra)")
    from condor.llm.embedded import default_model_path

    model_path = str(default_model_path())
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--n_threads", "2", "--n_threads_batch", "2", "--verbose", "False",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", model_path, log_path, process)
    try:
        deadline = time.monotonic() + _START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{server.base_url}/models", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer within {_START_SECONDS:.0f}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
