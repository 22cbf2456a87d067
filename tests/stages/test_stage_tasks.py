"""Task types: the seven defaults and the YAML file that adds or replaces them."""

import pytest

from condor.config import ConfigError
from condor.config_files import load_tasks
from condor.stages.tasks import TaskType, default_tasks, select_tasks

PAPER_TASKS = ["role_playing", "daily_chat", "domain_qa", "material_processing", "format_control", "view", "creation"]


def test_defaults_are_the_papers_seven_in_order():
    tasks = default_tasks()
    assert list(tasks) == PAPER_TASKS
    for task in tasks.values():
        assert task.name("en") and task.name("zh") != task.name("en")
        assert task.description("zh") != task.description("en")
    assert "material" in tasks["material_processing"].description("en")
    assert "材料" in tasks["material_processing"].description("zh")


def test_default_tasks_returns_a_fresh_dict():
    default_tasks().clear()
    assert len(default_tasks()) == 7


def write(tmp_path, text):
    path = tmp_path / "tasks.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
tasks:
  - slug: travel_planning
    name_en: Travel Planning
    name_zh: 旅行规划
    description_en: The user wants a concrete, day-by-day plan for a trip.
  - slug: view
    name_en: Opinion
    name_zh: 看法
    description_en: The user wants the assistant's argued opinion.
    description_zh: 用户希望听到助手有理有据的看法。
"""


def test_load_tasks_adds_and_overrides(tmp_path):
    tasks = load_tasks(write(tmp_path, GOOD))
    assert list(tasks)[:7] == PAPER_TASKS and "travel_planning" in tasks
    assert tasks["view"].name_en == "Opinion"
    # Chinese description falls back to English when absent
    assert tasks["travel_planning"].description("zh") == tasks["travel_planning"].description("en")


def test_load_tasks_replace(tmp_path):
    assert list(load_tasks(write(tmp_path, GOOD), replace=True)) == ["travel_planning", "view"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("tasks:\n  - slug: x\n", "tasks[0].name_en"),
        ("tasks:\n  - slug: Bad Slug\n    name_en: a\n    name_zh: b\n    description_en: long enough text\n", "tasks[0].slug"),
        ("tasks:\n  - slug: ok\n    name_en: a\n    name_zh: b\n    description_en: long enough text\n    colour: red\n", "tasks[0].colour"),
        ("[1, 2]", "'tasks' list"),
        ("tasks: []", "non-empty list"),
        ("tasks: [}", "not valid YAML"),
        ("tasks:\n  - {slug: a, name_en: a, name_zh: b, description_en: long enough text}\n  - {slug: a, name_en: a, name_zh: b, description_en: long enough text}\n", "appears twice"),
        ("tasks: [{slug: a, name_en: a, name_zh: b, description_en: long enough text}]\nextra: 1\n", "unknown top-level"),
    ],
)
def test_load_tasks_errors_name_file_and_field(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_tasks(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_load_tasks_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_tasks(tmp_path / "nope.yaml")


def test_select_tasks():
    tasks = default_tasks()
    assert list(select_tasks(tasks, ["view", "creation"])) == ["view", "creation"]
    assert select_tasks(tasks, None) == tasks
    with pytest.raises(ConfigError, match="unknown task type 'nope'"):
        select_tasks(tasks, ["nope"])
    with pytest.raises(ConfigError):
        select_tasks(tasks, [])


def test_task_type_is_strict():
    with pytest.raises(ValueError):
        TaskType(slug="a", name_en="a", name_zh="b", description_en="long enough text", extra=1)
