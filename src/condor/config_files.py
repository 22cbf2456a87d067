"""Files that settings point to, read once by the settings layer and handed to stages as values.

Stages do no file I/O: the task types file and the few-shot examples file are read here, with errors
that name the file, line and field. Every YAML settings document Condor reads goes through
:func:`read_yaml`, which bounds its size and alias expansion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from condor.documents import read_yaml_file
from condor.errors import ConfigError
from condor.stages.tasks import TaskType, default_tasks


def read_yaml(path: str | Path, what: str) -> Any:
    """The YAML (or JSON) document at ``path``; ``what`` names the file in messages ("task file").

    Read within bounds (:mod:`condor.documents`): size, nesting depth and YAML alias expansion.
    """
    return read_yaml_file(path, what, ConfigError)


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.lstrip(".")


def load_tasks(path: str | Path, replace: bool = False) -> dict[str, TaskType]:
    """Task types from a YAML file, added to the defaults (a repeated slug overrides) or replacing them.

    Raises ConfigError naming the file and the field for anything unusable.
    """
    source = Path(path)
    data = read_yaml(source, "task file")
    if not isinstance(data, dict) or "tasks" not in data:
        raise ConfigError(f"{source}: expected a mapping with a 'tasks' list at the top level")
    extra = sorted(set(data) - {"tasks"})
    if extra:
        raise ConfigError(f"{source}: unknown top-level key(s) {extra}; only 'tasks' is allowed")
    items = data["tasks"]
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source}: tasks: expected a non-empty list of task types")
    loaded: dict[str, TaskType] = {}
    for index, item in enumerate(items):
        try:
            task = TaskType.model_validate(item)
        except ValidationError as exc:
            problems = "; ".join(f"{_where(('tasks', index, *e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{source}: {problems}") from None
        if task.slug in loaded:
            raise ConfigError(f"{source}: tasks[{index}].slug: {task.slug!r} appears twice in this file")
        loaded[task.slug] = task
    if replace:
        return loaded
    merged = default_tasks()
    merged.update(loaded)
    return merged



def load_few_shot(path: str | Path) -> dict[str, list[str]]:
    """Example questions per domain from a YAML or JSON file: ``{domain: [question, ...]}``."""
    source = Path(path)
    data = read_yaml(source, "few-shot file")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping from domain name to a list of example questions")
    out: dict[str, list[str]] = {}
    for domain, questions in data.items():
        if not isinstance(questions, list) or not all(isinstance(q, str) and q.strip() for q in questions):
            raise ConfigError(f"{source}: {domain}: expected a list of non-empty question strings")
        out[str(domain)] = [q.strip() for q in questions]
    return out
