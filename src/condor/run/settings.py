"""Effective pipeline settings: config values, with demo-sized defaults on the embedded model.

``condor run`` with no server runs on a 135M-parameter model at roughly 100 tokens/s on two cores, so
the server-sized defaults (20 leaves x 7 tasks, 1,024 tokens per answer) would take hours. When the
question writer is the embedded backend and the user set neither leaves, tasks nor max_tokens, a small
demo plan is used instead, and the run says so. Anything given explicitly always wins.
"""

from __future__ import annotations

from condor.config import RunConfig
from condor.run.pipeline import Settings
from condor.stages.questions import load_few_shot
from condor.stages.tasks import default_tasks, load_tasks, select_tasks

SERVER_LEAVES = 20
DEMO_LEAVES = 2
DEMO_TASKS = ("domain_qa", "daily_chat", "creation")
DEMO_MAX_TOKENS = 320


def effective_settings(cfg: RunConfig, explicit: set[str]) -> Settings:
    """Resolve tasks, leaves, few-shot examples; ``explicit`` names the settings the user gave."""
    p = cfg.pipeline
    tasks = default_tasks()
    if p.task_file:
        tasks = load_tasks(p.task_file, replace=p.task_file_mode == "replace")
    notes: list[str] = []
    demo = cfg.backend_for("question_writer").backend == "embedded"
    leaves = p.leaves
    chosen_tasks = p.tasks
    if demo and "leaves" not in explicit:
        leaves = DEMO_LEAVES
    if demo and "tasks" not in explicit and not p.task_file:
        chosen_tasks = list(DEMO_TASKS)
    if demo and "max_tokens" not in explicit:
        for role_cfg in [cfg.llm, *cfg.roles.values()]:
            if role_cfg.backend == "embedded":
                role_cfg.max_tokens = DEMO_MAX_TOKENS
    if demo and {"leaves", "tasks", "max_tokens"} - explicit:
        notes.append(
            f"embedded model: demo settings ({leaves} leaves, tasks {', '.join(chosen_tasks or tasks)}, "
            f"max_tokens {cfg.llm.max_tokens}); pass --leaves/--tasks/--max-tokens to change them"
        )
    few_shot = load_few_shot(p.few_shot_file) if p.few_shot_file else None
    return Settings(
        leaves=leaves,
        tasks=select_tasks(tasks, chosen_tasks),
        rounds=p.rounds,
        select=p.select,
        few_shot=few_shot,
        notes=notes,
    )
