"""Condor Void, second step: the first answer (version 0) to each question.

The question goes to the answering model as the user message, as a user would send it, with an
optional short system message asking it to reply in the question's language. The reply is kept as it
is apart from a leading ``<think>`` block; judging whether it is good enough (cut off, a refusal, the
wrong language) is the quality filter's job, so ``finish_reason`` is kept beside it.

Record fields read: ``question``, ``language``, ``versions`` (if any).
Field written: ``versions`` gains ``{"round": 0, "answer", "finish_reason", "source": "answer"}``.
"""

from __future__ import annotations

from dataclasses import replace

from condor.llm.base import ChatRequest, Completion
from condor.stages.base import ParseError, Record, Stage
from condor.stages.markers import has_content, strip_reasoning
from condor.stages.prompting import chat, language_of, question_of, render, reply_text


class AnswerStage(Stage):
    """Answers each question once; the answer becomes version 0 of the record."""

    name = "answer"
    version = "1"
    role = "answerer"
    has_schema = False

    def __init__(
        self, max_tokens: int | None = None, temperature: float | None = None, system_prompt: bool = True
    ) -> None:
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.system_prompt = system_prompt

    def requests(self, record: Record, *, structured: bool = False) -> list[ChatRequest]:
        system = render("answer", language_of(record), "system") if self.system_prompt else None
        return [
            ChatRequest(
                messages=chat(system, question_of(record)), max_tokens=self.max_tokens, temperature=self.temperature
            )
        ]

    def parse(self, record: Record, completions: list[Completion], *, structured: bool = False) -> list[Record]:
        answer = strip_reasoning(reply_text(completions)).strip()
        if not has_content(answer):
            raise ParseError("empty_answer", "the model returned no answer text")
        version = {"round": 0, "answer": answer, "finish_reason": completions[0].finish_reason, "source": "answer"}
        return [{**record, "versions": [*record.get("versions", []), version]}]

    def repair_requests(
        self, record: Record, completions: list[Completion], error: ParseError
    ) -> list[ChatRequest] | None:
        # An empty answer has no format to repair; ask once more for a different sample instead of
        # the cached empty one.
        request = self.requests(record)[0]
        return [replace(request, sample_index=request.sample_index + 1)]
