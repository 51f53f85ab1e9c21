"""The unit every method consumes: one benchmark question with its parsed gold answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    id: str  # "<task>/<split>/<source id or index>", stable across runs
    question: str  # problem text (for code: the function prompt)
    gold: str  # normalized number, choice letter, or (code) the canonical solution
    choices: dict[str, str] | None = None  # letter -> option text, in the order shown
    meta: dict[str, Any] = field(default_factory=dict, compare=False)  # adapter extras (e.g. code problem)
    # The benchmark's own id (HumanEval/0, Mbpp/2, a GPQA record id); sources without ids (GSM8K, MedQA):
    # the record's 0-based position in its split, as text. Recorded per sample so results join with other tools.
    task_id: str | None = field(default=None, compare=False)
