"""What every run (eval, generate) is given: which questions, which model, where the data is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunRequest:
    task: str
    split: str | None = None  # None: the task card's default split
    limit: int | None = None  # the first N questions
    seed: int = 0
    model: str = "smollm2-135m"  # embedded name, Hub id or local path
    dtype: str = "float32"
    device: str = "cpu"
    data_dir: str | None = None  # offline data; None: $LATENTBENCH_DATA_DIR, else the Hub
    method_args: dict[str, Any] = field(default_factory=dict)  # method config overrides
    show_progress: bool = True
