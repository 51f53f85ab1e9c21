"""Task registry: every ``tasks/*.yaml`` card is a task, addressed by its file stem."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from latentbench.errors import TaskNotFoundError
from latentbench.paths import TASKS_DIR
from latentbench.tasks.card import TaskCard
from latentbench.tasks.task import Task


def task_names(tasks_dir: Path = TASKS_DIR) -> list[str]:
    return sorted(p.stem for p in tasks_dir.glob("*.yaml"))


@cache
def get_task(name: str, tasks_dir: Path = TASKS_DIR) -> Task:
    path = tasks_dir / f"{name}.yaml"
    if not path.is_file():
        raise TaskNotFoundError(f"unknown task {name!r}; known tasks: {', '.join(task_names(tasks_dir))} "
                                f"(cards in {tasks_dir})")
    return Task(TaskCard.from_yaml(path))
