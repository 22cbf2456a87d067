"""Scripted judges for the fake server, and helpers that make and judge small runs through it.

Importable from any test directory as ``from judge.verdicts import ...`` (``tests/`` is on sys.path and
``judge`` is a namespace package). Every judge answers the other Condor prompts like
``condor_responder.respond``, so one server can serve a whole pipeline run and its judgement.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from condor_responder import respond
from fake_server import FakeChatServer

import condor
from condor.judge.runner import JudgeResult, ajudge_runs

_FIRST = re.compile(r"<answer_1>\n(.*?)\n</answer_1>", re.DOTALL)
_SECOND = re.compile(r"<answer_2>\n(.*?)\n</answer_2>", re.DOTALL)


def _prompt(body: dict) -> str:
    return body["messages"][-1]["content"]


def _verdict(body: dict, verdict: str) -> str:
    if (body.get("response_format") or {}).get("type") == "json_schema":
        return json.dumps({"reason": "Compared both answers carefully.", "verdict": verdict})
    return f"[Reason Start]Compared both answers carefully.[Reason End]\n[Verdict] {verdict}"


def pairwise_judge(choose: Callable[[str, str], str]) -> Callable[[dict], str]:
    """A responder whose pairwise verdict is ``choose(answer_1, answer_2)``; everything else as usual."""

    def responder(body: dict) -> str:
        prompt = _prompt(body)
        if "<answer_1>" in prompt:
            return _verdict(body, choose(_FIRST.search(prompt).group(1), _SECOND.search(prompt).group(1)))
        return respond(body)

    return responder


#: Prefers the refined answer ("Improved version ...") wherever it is shown: consistent in both orders.
prefers_refined = pairwise_judge(lambda first, second: "1" if "Improved" in first else "2" if "Improved" in second else "tie")
#: Always names the answer shown first: every pair must come out a tie.
prefers_first = pairwise_judge(lambda first, second: "1")
#: Always names the answer shown second.
prefers_second = pairwise_judge(lambda first, second: "2")
#: Prefers the longer answer, in both orders.
prefers_longer = pairwise_judge(lambda first, second: "1" if len(first) > len(second) else "2" if len(second) > len(first) else "tie")


def make_run(out: Path, responder: Callable[[dict], str] = respond, **pipeline) -> Path:
    """A finished pipeline run in ``out`` through a fake server of its own (stopped afterwards)."""
    settings = {"leaves": 2, "tasks": ["view"], "rounds": 1, **pipeline}
    with FakeChatServer(responder=responder) as server:
        overrides = {"llm.base_url": server.base_url, "llm.model": "fake-model"}
        overrides.update({f"pipeline.{k}": v for k, v in settings.items()})
        condor.run_pipeline(condor.load_config(None, overrides), out)
    return out


def judge_config(server: FakeChatServer, **more) -> condor.RunConfig:
    return condor.load_config(None, {"llm.base_url": server.base_url, "llm.model": "judge-model", **more})


def judge(server: FakeChatServer, **options) -> tuple[JudgeResult, int]:
    """Run the judge against ``server``; returns the result and how many requests it sent."""
    import asyncio

    before = server.request_count
    result = asyncio.run(ajudge_runs(judge_config(server), **options))
    return result, server.request_count - before
