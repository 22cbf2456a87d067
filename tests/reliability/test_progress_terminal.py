"""Progress in a real terminal (tmux): one line per step that fits 80 and 100 columns, and a stuck server
shown as items in flight with the age of the oldest, not as a bar that silently stays at 0/2.

``make test`` installs tmux (as it installs chromium for the report's browser tests); without it these
tests are skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from condor_responder import respond
from fake_server import FakeChatServer

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (make test installs it)")

STEPS = ("questions", "answer", "critique_1", "refine_1")


class Terminal:
    """A detached tmux session of a given size on a socket of its own, running one command."""

    def __init__(self, tmp_path: Path, width: int, height: int = 40) -> None:
        self.socket = f"condor-test-{os.getpid()}-{width}"
        self.width = width
        self.height = height
        self.done = tmp_path / f"done-{width}"

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True).stdout

    def start(self, *condor_args: str | Path) -> None:
        env = f"PYTHONPATH={shlex.quote(os.environ.get('PYTHONPATH', ''))} HF_HUB_OFFLINE=1"
        command = shlex.join([sys.executable, "-m", "condor.cli.main", *map(str, condor_args)])
        # The exit code goes to a file; the shell then stays, so the pane can still be read.
        script = f"env {env} {command}; echo $? > {shlex.quote(str(self.done))}; sleep 600"
        self.tmux("new-session", "-d", "-x", str(self.width), "-y", str(self.height), "sh", "-c", script)

    def screen(self, joined: bool = False) -> list[str]:
        text = self.tmux("capture-pane", "-p", *(["-J"] if joined else []))
        return [line.rstrip() for line in text.splitlines() if line.strip()]

    def wait_for(self, predicate, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.screen()
            if predicate(lines):
                return lines
            time.sleep(0.25)
        raise AssertionError("the terminal never showed what was expected:\n" + "\n".join(self.screen()))

    def finished(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while not self.done.exists() or not self.done.read_text().strip():
            if time.monotonic() > deadline:
                raise AssertionError("the command did not finish:\n" + "\n".join(self.screen()))
            time.sleep(0.25)
        return int(self.done.read_text())

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.mark.parametrize("width", [80, 100])
def test_each_step_is_one_line_that_fits_the_terminal(tmp_path, width):
    with FakeChatServer(latency=0.05, responder=respond) as server:
        server.queue_faults("400")  # one failed item, so the row has its failure count to fit in too
        terminal = Terminal(tmp_path, width)
        try:
            terminal.start("run", "-o", tmp_path / "out", "--leaves", "2", "--tasks", "view,creation", "--rounds", "1",
                           "--base-url", server.base_url, "--model", "fake-model", "--concurrency", "2")
            assert terminal.finished(300) in (0, 1)
            lines, joined = terminal.screen(), terminal.screen(joined=True)
            shown = "\n".join(lines)
            # The steps' rows are the first lines, one each, and the summary follows at once: no row
            # was broken in two, neither by rich inside its table nor by the terminal.
            assert [line.split()[0] for line in lines[: len(STEPS)]] == list(STEPS), shown
            assert lines[len(STEPS)].startswith("dataset:"), shown
            assert "failed 1" in lines[0], lines[0]
            for row in lines[: len(STEPS)]:
                assert len(row) < width and "/" in row and "req/s" in row, row
                # Not wrapped by the terminal either: joining wrapped lines (-J) leaves the row as it is.
                assert row in joined, shown
        finally:
            terminal.close()


def test_a_stuck_server_shows_items_in_flight_and_their_age(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": i, "prompt": f"p{i}"}) + "\n" for i in range(2)))
    config = tmp_path / "c.yaml"
    config.write_text("llm: {timeout: 8}\n")
    # /v1/models answers; each chat request is held open for an hour.
    with FakeChatServer(fail_rate=1.0, fail_kinds=("timeout",), hang_seconds=3600) as server:
        terminal = Terminal(tmp_path, 80)
        try:
            terminal.start("generate", prompts, "-o", tmp_path / "out", "-c", config,
                           "--base-url", server.base_url, "--model", "fake-model")
            lines = terminal.wait_for(lambda ls: any("2 in flight, oldest 3s" in line for line in ls), timeout=60)
            row = next(line for line in lines if line.startswith("generate"))
            assert "0/2" in row and len(row) < 80, row
            # The timeouts then end it, with the reason (two attempts of 8 s each, and a backoff).
            assert terminal.finished(90) == 1
            assert any("did not answer" in line for line in terminal.screen(joined=True))
        finally:
            terminal.close()
