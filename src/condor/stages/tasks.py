"""The kinds of request Condor Void writes questions for, as data.

The paper spreads its synthetic questions over seven task types so that a tag yields more than trivia:
role play, everyday chat, domain questions, work on supplied material, answers in a required format,
requests for an opinion, and creative writing. Each :class:`TaskType` carries display names and a
description per language; the description is pasted into the question-writing prompt, so it is
written to steer a model, not to document the code.

Users can add task types or replace the set with a YAML file (:func:`load_tasks`):

    tasks:
      - slug: travel_planning
        name_en: Travel Planning
        name_zh: 旅行规划
        description_en: The user wants a concrete plan ...
        description_zh: 用户需要一份具体的计划 ...   # optional; the English text is used when absent

This module does not sample tasks or pair them with tags; that belongs to the tree sampler.
"""

from __future__ import annotations

from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field

from condor.errors import ConfigError


class TaskType(BaseModel):
    """One kind of user request, with the words that steer question writing towards it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Identifier used in record ids and configs.")
    name_en: str = Field(min_length=1, description="English display name.")
    name_zh: str = Field(min_length=1, description="Chinese display name.")
    description_en: str = Field(min_length=10, description="What such a question asks for, in English.")
    description_zh: str | None = Field(None, min_length=4, description="The same in Chinese (default: English).")

    def name(self, language: str) -> str:
        return self.name_zh if language == "zh" else self.name_en

    def description(self, language: str) -> str:
        if language == "zh" and self.description_zh:
            return self.description_zh
        return self.description_en


_DEFAULTS: tuple[TaskType, ...] = (
    TaskType(
        slug="role_playing",
        name_en="Role Playing",
        name_zh="角色扮演",
        description_en=(
            "The user casts the assistant as a character, a professional or a persona connected with the topic "
            "(or sets a scene) and asks it to reply in that role, staying in character."
        ),
        description_zh="用户让助手扮演与该主题相关的某个角色、职业或人物（或设定一个场景），并要求它以该身份作答、始终保持角色。",
    ),
    TaskType(
        slug="daily_chat",
        name_en="Daily Chat",
        name_zh="日常闲聊",
        description_en=(
            "A relaxed, conversational message such as people send in everyday life that touches on the topic: "
            "sharing an experience or a feeling, asking for a quick tip, or just chatting about it."
        ),
        description_zh="像日常生活中随口发出的轻松消息，与该主题有关：分享经历或感受、讨个小建议，或者只是随便聊聊。",
    ),
    TaskType(
        slug="domain_qa",
        name_en="Domain Q&A",
        name_zh="领域问答",
        description_en=(
            "A question that seeks accurate, specialised knowledge about the topic: facts, concepts, mechanisms, "
            "causes, methods or how things compare."
        ),
        description_zh="寻求与该主题相关的准确专业知识的问题：事实、概念、原理、成因、方法或不同事物之间的比较。",
    ),
    TaskType(
        slug="material_processing",
        name_en="Given Material Processing",
        name_zh="给定材料处理",
        description_en=(
            "The user supplies material related to the topic (a passage, a table, a list, some data, a piece of "
            "code or a dialogue) and asks the assistant to work on it: summarise, extract, rewrite, translate, "
            "classify, check or analyse. The material itself must be written out in full inside the question."
        ),
        description_zh=(
            "用户提供一段与该主题相关的材料（文章段落、表格、清单、数据、代码或对话），请助手对其进行处理："
            "总结、提取、改写、翻译、分类、检查或分析。材料本身必须完整地写在问题里。"
        ),
    ),
    TaskType(
        slug="format_control",
        name_en="Response Format Control",
        name_zh="回复格式控制",
        description_en=(
            "A request about the topic that also states explicit requirements on the form of the reply: its "
            "length, structure, number of points, a table or list, a tone, or a template to follow."
        ),
        description_zh="关于该主题的请求，同时对回复的形式提出明确要求：字数、结构、要点数量、表格或列表、语气，或需要遵循的模板。",
    ),
    TaskType(
        slug="view",
        name_en="View",
        name_zh="观点表达",
        description_en=(
            "The user asks for the assistant's opinion, judgement or evaluation of something within the topic, "
            "often a debatable point, and expects the view to be argued with reasons."
        ),
        description_zh="用户询问助手对该主题中某件事的看法、判断或评价，往往是有争议的问题，并希望看到有理有据的论述。",
    ),
    TaskType(
        slug="creation",
        name_en="Creation",
        name_zh="内容创作",
        description_en=(
            "The user asks for an original piece of writing connected with the topic: a story, a poem, a slogan, "
            "a speech, a letter, a script, an advertisement or something similar."
        ),
        description_zh="用户请助手围绕该主题创作原创内容：故事、诗歌、标语、演讲稿、书信、剧本、广告文案等。",
    ),
)


def default_tasks() -> dict[str, TaskType]:
    """The paper's seven task types, keyed by slug, in the paper's order."""
    return {task.slug: task for task in _DEFAULTS}


def select_tasks(tasks: dict[str, TaskType], slugs: Iterable[str] | None) -> dict[str, TaskType]:
    """The task types named by ``slugs`` (all of them when None), or ConfigError for an unknown slug."""
    if slugs is None:
        return dict(tasks)
    chosen: dict[str, TaskType] = {}
    for slug in slugs:
        if slug not in tasks:
            raise ConfigError(f"unknown task type {slug!r}; known task types: {', '.join(tasks)}")
        chosen[slug] = tasks[slug]
    if not chosen:
        raise ConfigError("the task list is empty; name at least one task type")
    return chosen
