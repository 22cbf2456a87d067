"""Effective pipeline settings: the config's values, with demo-sized defaults on the embedded model.

``condor run`` with no server runs on a 135M-parameter model at roughly 50 tokens/s on two cores, so
the server-sized defaults (20 leaves x 7 tasks, 1,024 tokens per answer) would take hours. When the
question writer is the embedded backend and the user set neither leaves, tasks nor max_tokens, a small
demo plan is used instead, and the run says so. Anything the user gave (in the file or as a flag, as
pydantic's ``model_fields_set`` records) always wins. The caller's config is never changed: the
demo's token limit goes into a copy.

Files the settings name (task types, few-shot examples) are read here, once, and handed to stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from condor.config import ROLES, RunConfig
from condor.config_files import load_few_shot, load_tasks
from condor.stages.tasks import TaskType, default_tasks, select_tasks

DEMO_LEAVES = 2
DEMO_TASKS = ("domain_qa", "daily_chat", "creation")
DEMO_MAX_TOKENS = 320
#: Plain-text replies (answers) of the demo's 135M model looped until max_tokens half as often with it.
DEMO_REPEAT_PENALTY = 1.15


@dataclass
class Settings:
    """Pipeline settings after defaults were applied, and the config they were applied to."""

    config: RunConfig
    leaves: int
    tasks: dict[str, TaskType]
    rounds: int
    select: str
    few_shot: dict[str, list[str]] | None = None
    notes: list[str] = field(default_factory=list)
    #: The on-topic scorer (None: relevance off) and the benchmark n-gram index (None: no files).
    scorer: Any = None
    benchmarks: Any = None


def _llm_given(cfg: RunConfig, name: str) -> bool:
    return cfg.given(f"llm.{name}") or any(name in role.model_fields_set for role in cfg.roles.values())


def effective_settings(cfg: RunConfig) -> Settings:
    """Resolve tasks, leaves and few-shot examples, and apply demo sizes on the embedded model."""
    p = cfg.pipeline
    tasks = load_tasks(p.task_file, replace=p.task_file_mode == "replace") if p.task_file else default_tasks()
    notes: list[str] = []
    demo = cfg.backend_for("question_writer").backend == "embedded"
    leaves, chosen_tasks = p.leaves, p.tasks
    given = {"leaves": cfg.given("pipeline.leaves"), "tasks": cfg.given("pipeline.tasks"),
             "max_tokens": _llm_given(cfg, "max_tokens"), "repeat_penalty": _llm_given(cfg, "repeat_penalty")}
    if demo and not given["leaves"]:
        leaves = DEMO_LEAVES
    if demo and not given["tasks"] and not p.task_file:
        chosen_tasks = list(DEMO_TASKS)
    sizes = {}
    if demo and not given["max_tokens"]:
        sizes["max_tokens"] = DEMO_MAX_TOKENS
    if demo and not given["repeat_penalty"]:
        sizes["repeat_penalty"] = DEMO_REPEAT_PENALTY
    if sizes:
        llm = cfg.llm.model_copy(update=sizes) if cfg.llm.backend == "embedded" else cfg.llm
        roles = {
            role: (settings.model_copy(update=sizes) if settings.backend == "embedded" else settings)
            for role, settings in cfg.roles.items()
        }
        cfg = cfg.model_copy(update={"llm": llm, "roles": roles})
    if demo and not all(given.values()):
        writer = cfg.backend_for("question_writer")
        notes.append(
            f"embedded model: demo settings ({leaves} leaves, tasks {', '.join(chosen_tasks or tasks)}, "
            f"max_tokens {writer.max_tokens}, repeat_penalty {getattr(writer, 'repeat_penalty', 1.0):g} on plain text); "
            "pass --leaves/--tasks/--max-tokens or set llm.repeat_penalty to change them"
        )
    few_shot = load_few_shot(p.few_shot_file) if p.few_shot_file else None
    from condor.filters.contamination import load_index
    from condor.filters.relevance import make_scorer

    benchmarks = load_index(p.decontaminate) if p.decontaminate else None
    if benchmarks is not None and benchmarks.skipped:
        notes.append(f"decontamination: {benchmarks.skipped} benchmark prompts under 5 words were skipped")
    return Settings(
        config=cfg,
        leaves=leaves,
        tasks=select_tasks(tasks, chosen_tasks),
        rounds=p.rounds,
        select=p.select,
        few_shot=few_shot,
        notes=notes,
        scorer=make_scorer(p.relevance),
        benchmarks=benchmarks,
    )


__all__ = ["DEMO_LEAVES", "DEMO_MAX_TOKENS", "DEMO_TASKS", "ROLES", "Settings", "effective_settings"]
