"""An in-process LLMBackend with scripted answers, for executor logic tests that need no HTTP.

Integration tests use the real local HTTP server in ``fake_server.py``; this one exists for the cases
where the thing under test is the executor's control flow (repair, schema fallback, failures).
"""

from __future__ import annotations

import asyncio
from typing import Callable, Sequence

from condor.llm.base import Capabilities, ChatRequest, Completion, LLMBackend


class ScriptedBackend(LLMBackend):
    def __init__(self, answer: Callable[[ChatRequest], Completion | str], *, schema: bool = True,
                 concurrency: int = 8, identity: str = "scripted:test") -> None:
        self.answer = answer
        self.capabilities = Capabilities(structured=schema)
        self.concurrency = concurrency
        self.identity = identity
        self.calls: list[ChatRequest] = []

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        out = []
        for request in requests:
            self.calls.append(request)
            await asyncio.sleep(0)
            result = self.answer(request)
            out.append(Completion(text=result, finish_reason="stop", prompt_tokens=3, completion_tokens=2)
                       if isinstance(result, str) else result)
        return out
