"""Question types ("tasks"), one module each, and the registry that orders them.

    from spelling_exp import tasks
    tasks.get("count").build(rows, eval_cfg)

A new task is one module with a ``Task`` subclass, registered here (or by ``tasks.register`` from
anywhere, as tests/evaluation/test_toy_task.py does): questions, scoring, metrics, comparison and
report then handle it with no other edit. Its config fields, if it needs any beyond
``eval.phrasings``, go in config.py's ``EvalConfig`` (the one source of defaults).
"""
from spelling_exp.tasks.base import Breakdown, Task
from spelling_exp.tasks.count import Count
from spelling_exp.tasks.length import Length
from spelling_exp.tasks.occurrence import Occurrence
from spelling_exp.tasks.position import Position
from spelling_exp.tasks.registry import PRIMARY_TASKS, get, names, ordered, primary, register, unregister

for _task in (Position(), Count(), Length(), Occurrence()):
    register(_task)

__all__ = ["PRIMARY_TASKS", "Breakdown", "Task", "get", "names", "ordered", "primary", "register", "unregister"]
