"""A run whose model wrote hostile markup everywhere, judged, to build reports from."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fake_server import FakeChatServer
from judge.verdicts import judge, make_run, prefers_refined
from report.pages import hostile

import condor

@pytest.fixture(scope="session")
def hostile_run(tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("report") / "hostile", responder=hostile, leaves=3, tasks=["view", "creation"])
    with FakeChatServer(responder=prefers_refined) as server:
        judge(server, run=run)
    assert any(r["reason"] == "question_too_short" for r in condor.read_run(run).rejections()), "the run needs a rejected record"
    return run


class Counts:
    """What the report of the hostile run must show: kept, rejected, and one rejection's status label."""

    def __init__(self, run: Path) -> None:
        reader = condor.read_run(run)
        self.final = reader.final_records()
        self.rejected = list(reader.rejections())
        self.kept, self.total = len(self.final), len(self.final) + len(self.rejected)
        first = self.rejected[0]
        self.status = f"rejected: {first['stage']}: {first['reason']}"
        self.status_count = sum(1 for r in self.rejected if f"rejected: {r['stage']}: {r['reason']}" == self.status)


@pytest.fixture
def counts(hostile_run) -> Counts:
    return Counts(hostile_run)


@pytest.fixture
def run_copy(hostile_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(hostile_run, copy)
    return copy


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots are kept (ignored by git), for a person to look at after a test run."""
    directory = Path(__file__).resolve().parents[2] / "test-artifacts"
    directory.mkdir(exist_ok=True)
    return directory
