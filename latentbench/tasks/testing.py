"""Conformance tests every task adapter inherits (like zarr's ``StoreTests``).

Subclass ``TaskAdapterTests`` in a test module, set ``task_name`` (and ``splits`` to check), and pytest
collects: every gold parses and scores as correct, loading is deterministic, ``--limit`` takes the
first N, ids are unique, prompts contain the question. Test ids carry indices only, never question
text (GPQA's authors ask that its questions never appear in plain text online).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import pytest

from latentbench.tasks import Task, get_task


class TaskAdapterTests:
    task_name: ClassVar[str]
    splits: ClassVar[tuple[str, ...]] = ()  # splits whose every gold must parse (default: all)
    gold_sample: ClassVar[int | None] = None  # code tasks: how many golds to run in the sandbox here

    @pytest.fixture
    def task(self) -> Task:
        return get_task(self.task_name)

    @pytest.fixture
    def data_dir(self) -> Path:
        return Path(os.environ["LATENTBENCH_DATA_DIR"])

    def _splits(self, task: Task) -> tuple[str, ...]:
        return self.splits or tuple(task.card.splits)

    def test_every_gold_scores_correct(self, task: Task, data_dir: Path) -> None:
        for split in self._splits(task):
            examples = task.examples(split, data_dir=data_dir)[: self.gold_sample]
            assert examples, f"{split}: no examples"
            scores = task.score_many(examples, [task.gold_output(ex) for ex in examples])
            wrong = [i for i, s in enumerate(scores) if not all(s.correct.values())]
            assert not wrong, f"{task.name}/{split}: gold of examples {wrong[:10]} does not score correct"

    def test_wrong_answer_scores_wrong(self, task: Task, data_dir: Path) -> None:
        ex = task.examples(limit=1, data_dir=data_dir)[0]
        if task.card.answer_kind == "choice":
            wrong = next(letter for letter in ex.choices or {} if letter != ex.gold)
            output = f"The answer is ({wrong})."
        elif task.card.answer_kind == "number":
            output = f"The answer is {float(ex.gold) + 1:g}."
        else:
            output = "```python\ndef unrelated():\n    return None\n```"
        assert not any(task.score(ex, output).correct.values())

    def test_loading_is_deterministic(self, task: Task, data_dir: Path) -> None:
        first = task.examples(limit=20, data_dir=data_dir)
        second = task.examples(limit=20, data_dir=data_dir)
        assert [(e.id, e.question, e.gold, e.choices) for e in first] == \
               [(e.id, e.question, e.gold, e.choices) for e in second]

    def test_limit_takes_the_first_n(self, task: Task, data_dir: Path) -> None:
        full = task.examples(data_dir=data_dir)
        assert [e.id for e in task.examples(limit=3, data_dir=data_dir)] == [e.id for e in full[:3]]
        assert len({e.id for e in full}) == len(full), "example ids must be unique"

    def test_prompt_contains_question_and_choices(self, task: Task, data_dir: Path) -> None:
        ex = task.examples(limit=1, data_dir=data_dir)[0]
        prompt = task.prompt(ex)
        assert ex.question.strip()[:50] in prompt
        for letter, text in (ex.choices or {}).items():
            assert f"{letter}. {text}" in prompt
