"""Task registry and adapters: loading, prompts, answer extraction, scoring, the code sandbox."""

from latentbench.tasks.example import Example
from latentbench.tasks.registry import get_task, task_names
from latentbench.tasks.task import Score, Task

__all__ = ["Example", "Score", "Task", "get_task", "task_names"]
