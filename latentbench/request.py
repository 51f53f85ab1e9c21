"""What every run (eval, generate) is given: which questions, which method, which model, where the data is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from latentbench.models.loading import DEFAULT_MODEL


@dataclass
class RunRequest:
    task: str
    method: str = "cot"  # a name in latentbench.methods.METHODS
    split: str | None = None  # None: the task card's default split
    limit: int | None = None  # the first N questions
    seed: int = 0  # the run's one seed: torch, and every config with a ``seed`` field
    model: str = DEFAULT_MODEL  # embedded name, Hub id or local path
    dtype: str = "float32"
    device: str = "cpu"
    data_dir: str | None = None  # offline data; None: $LATENTBENCH_DATA_DIR, else the Hub
    allow_modified_data: bool = False  # use a local data file whose sha256 differs from its task card's (recorded)
    method_args: dict[str, Any] = field(default_factory=dict)  # method config field -> raw or typed value
    method_sources: dict[str, str] = field(default_factory=dict)  # field -> how the user wrote it (errors)
    show_progress: bool = True
    command: list[str] | None = None  # the command line, recorded for reproduction (None: from Python)
