"""The shipped prompt files: every stage in both languages, same sections, fully rendered."""

import re

import pytest

import condor.stages
from condor.stages.answers import AnswerStage
from condor.stages.critique import CritiqueStage
from condor.stages.judge import JudgeStage
from condor.stages.prompting import LANGUAGES, prompt_sections, render
from condor.stages.questions import QuestionStage
from condor.stages.refine import RefineStage
from condor.stages.tasks import default_tasks

STAGES = ["questions", "answer", "critique", "refine", "judge"]


@pytest.mark.parametrize("stage", STAGES)
def test_both_languages_have_the_same_sections(stage):
    en, zh = (set(prompt_sections(stage, lang)) for lang in LANGUAGES)
    assert en == zh and "system" in en


@pytest.mark.parametrize("stage", ["questions", "critique", "refine", "judge"])
def test_format_and_repair_sections_exist(stage):
    for lang in LANGUAGES:
        assert {"user", "text_format", "json_format", "repair"} <= set(prompt_sections(stage, lang))


def test_text_format_markers_are_identical_across_languages():
    for stage in ["questions", "critique", "refine", "judge"]:
        en, zh = (set(re.findall(r"\[[A-Za-z ]+\]", render(stage, lang, "text_format"))) for lang in LANGUAGES)
        assert en == zh and en


def test_unknown_language_or_section():
    with pytest.raises(ValueError, match="no prompts for language"):
        prompt_sections("questions", "fr")
    with pytest.raises(ValueError, match="no section"):
        render("answer", "en", "user")


RECORD = {
    "id": "en/x/view/hard",
    "tag_path": ["Economics", "Inflation", "Wage-price spiral"],
    "task": "view",
    "question": "Is a wage-price spiral likely now?",
    "versions": [{"round": 0, "answer": "Maybe.", "finish_reason": "stop", "source": "answer"}],
    "critiques": [{"round": 1, "strengths": "s", "weaknesses": "w", "suggestions": "g"}],
}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("structured", [False, True])
def test_every_request_is_fully_rendered(language, structured):
    record = {**RECORD, "language": language}
    stages = [QuestionStage(default_tasks(), few_shot={"Economics": ["Why do prices rise?"]}), AnswerStage(),
              CritiqueStage(1), RefineStage(1), JudgeStage()]
    for stage in stages:
        for request in stage.requests(record, structured=structured):
            for message in request.messages:
                assert message["content"].strip()
                assert not re.search(r"\$[a-z_]", message["content"]), (stage.name, message["content"])


def test_package_exports():
    assert sorted(condor.stages.__all__) == sorted(
        ["AnswerStage", "CritiqueStage", "JudgeStage", "ParseError", "QuestionStage", "Record", "RefineStage",
         "Rejection", "Stage", "TaskType", "default_tasks", "select_tasks", "select_version"]
    )
    for name in condor.stages.__all__:
        assert hasattr(condor.stages, name)
