"""Progress bars: every stage shows done/total, rates, retries and failures; quiet shows nothing."""

import io

from rich.console import Console
from scripted_backend import ScriptedBackend
from test_run_executor import UpperStage, records

from condor.llm.base import Completion
from condor.run.local import StageRunner
from condor.run.progress import ProgressBoard, StageProgress
from condor.run.directory import RunDirectory


async def test_bar_shows_counts_rates_and_failures(tmp_path):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=200)
    answers = iter([Completion.failed("http 400: no", retries=2)] + ["OK:x"] * 20)
    backend = ScriptedBackend(lambda r: next(answers), concurrency=1)
    with ProgressBoard(console=console) as board:
        await StageRunner(UpperStage(), backend, RunDirectory(tmp_path).stage("upper"), board=board, window=1).run(
            records(12), total=12
        )
    text = buffer.getvalue()
    assert "upper" in text and "12/12" in text
    assert "req/s" in text and "tok/s" in text and "retries 2" in text and "failed 1" in text


async def test_quiet_board_prints_nothing(tmp_path):
    buffer = io.StringIO()
    with ProgressBoard(quiet=True, console=Console(file=buffer, force_terminal=True)) as board:
        await StageRunner(UpperStage(), ScriptedBackend(lambda r: "OK:y"), RunDirectory(tmp_path).stage("upper"),
                          board=board).run(records(5), total=5)
    assert buffer.getvalue() == ""


def test_finished_stage_keeps_its_rate():
    import time

    stage = StageProgress("s", 10)
    stage.requests = 10
    with ProgressBoard(quiet=True).track(stage):
        time.sleep(0.02)
    rate = stage.rates()[0]
    time.sleep(0.05)  # later stages running must not make a finished one look slower
    assert stage.rates()[0] == rate
