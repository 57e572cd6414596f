"""The registry of tasks: their order, and which are primary, defined once.

Display order is registration order (tasks/__init__.py registers the built-in ones). An unknown
task name is an error naming the known ones, never a fallback to another task.
"""
from __future__ import annotations

from collections.abc import Iterable

from spelling_exp.errors import ConfigError
from spelling_exp.tasks.base import Task

# Co-primary, Holm-corrected in every comparison; every other task is exploratory.
PRIMARY_TASKS = ("position", "count")

_TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} is registered twice")
    _TASKS[task.name] = task
    return task


def unregister(name: str) -> None:
    """Remove a task (tests that register a toy task clean up with this)."""
    if name in PRIMARY_TASKS:
        raise ValueError(f"task {name!r} is primary and cannot be removed")
    _TASKS.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(_TASKS)


def get(name: str, key: str = "task") -> Task:
    task = _TASKS.get(str(name))
    if task is None:
        raise ConfigError(f"{key}: unknown task {str(name)!r} (known: {', '.join(_TASKS)})")
    return task


def ordered(task_names: Iterable[str], key: str = "task") -> list[str]:
    """The given task names, deduplicated, in display order; an unknown one is an error."""
    order = list(_TASKS)
    unique = {str(t) for t in task_names}
    for t in unique:
        get(t, key)
    return sorted(unique, key=order.index)


def primary(task_names: Iterable[str]) -> list[str]:
    present = {str(t) for t in task_names}
    return [t for t in PRIMARY_TASKS if t in present]
