"""MBPP+'s `train` split: the original MBPP's train part (task_id 601-974) minus every problem MBPP+
scores, read into MBPP+ records (the inputs parsed from the asserts), for training on code tasks."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from latentbench.errors import DataFormatError
from latentbench.tasks import get_task
from latentbench.tasks.code_eval import score_programs
from latentbench.tasks.sources import read_records


def _mbpp(number: int, asserts: list[str], name: str = "add") -> dict:
    return {"task_id": number, "text": f"Write a function number {number}.",
            "code": f"def {name}(a, b):\r\n    return a + b", "test_setup_code": "", "test_list": asserts,
            "challenge_test_list": []}


def _plus(number: int) -> dict:
    return {"task_id": f"Mbpp/{number}", "prompt": '"""\nx\n"""\n', "entry_point": "add",
            "canonical_solution": "def add(a, b):\n    return a + b\n", "base_input": [[1, 2]], "plus_input": [],
            "atol": 0}


@pytest.fixture
def fake_data(tmp_path: Path) -> Path:
    (tmp_path / "mbpp").mkdir()
    (tmp_path / "mbppplus").mkdir()
    lines = [_mbpp(12, ["assert add(1, 2) == 3"]),  # the original test part: not train
             _mbpp(601, ["assert add(1, 2) == 3", "assert add((1,), (2,)) == (1, 2)"]),
             _mbpp(602, ["assert add(1, 2) == 3"]),  # scored by MBPP+: left out
             _mbpp(603, ["assert int(add(1, 2)) == 3"]),  # not f(literals) == literal: no inputs to read
             _mbpp(604, ["assert add(1, 2) == 3", "assert plus(1, 2) == 3"]),  # two functions
             _mbpp(974, ["assert add([1], [2]) == [1, 2]"], name="add"),
             _mbpp(975, ["assert add(1, 2) == 3"])]  # past the train part
    (tmp_path / "mbpp" / "mbpp.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with gzip.open(tmp_path / "mbppplus" / "MbppPlus.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(_plus(602)) + "\n")
    return tmp_path


def test_train_keeps_the_train_part_minus_scored_problems_with_inputs_from_the_asserts(fake_data: Path) -> None:
    records = read_records(get_task("mbppplus").card, "train", fake_data, allow_modified=True)
    assert [r["task_id"] for r in records] == ["Mbpp/601", "Mbpp/974"]
    first = records[0]
    assert first["prompt"] == '"""\nWrite a function number 601.\nassert add(1, 2) == 3\n"""\n'
    assert first["entry_point"] == "add" and first["base_input"] == [[1, 2], [(1,), (2,)]]
    assert first["canonical_solution"] == "\ndef add(a, b):\n    return a + b\n" and first["plus_input"] == []


def test_train_examples_score_like_mbppplus(fake_data: Path) -> None:
    task = get_task("mbppplus")
    examples = task.examples("train", data_dir=fake_data, allow_modified_data=True)
    assert [e.task_id for e in examples] == ["Mbpp/601", "Mbpp/974"]
    assert "assert add(1, 2) == 3" in task.prompt(examples[0])
    right = "```python\ndef add(a, b):\n    return a + b\n```"
    wrong = "```python\ndef add(a, b):\n    return a\n```"
    assert [s.correct["plus"] for s in task.score_many(examples, [right, wrong])] == [True, False]


def test_a_record_that_is_not_mbpp_names_file_and_line(fake_data: Path) -> None:
    path = fake_data / "mbpp" / "mbpp.jsonl"
    path.write_text(path.read_text() + json.dumps({"task_id": 700, "text": "x"}) + "\n")
    with pytest.raises(DataFormatError, match=r"mbpp\.jsonl:8: not an MBPP record \(no 'code'\)"):
        read_records(get_task("mbppplus").card, "train", fake_data, allow_modified=True)


def test_exclude_split_must_name_a_split(tmp_path: Path) -> None:
    from latentbench.tasks.card import TaskCard

    card = Path(__file__).parents[1] / "tasks" / "mbppplus.yaml"
    text = card.read_text().replace("exclude_split: test", "exclude_split: dev")
    (tmp_path / "mbppplus.yaml").write_text(text)
    with pytest.raises(DataFormatError, match="splits.train.exclude_split 'dev' is not among splits"):
        TaskCard.from_yaml(tmp_path / "mbppplus.yaml")


def test_real_train_split_is_disjoint_from_the_scored_problems_and_every_canonical_passes(data_dir: Path) -> None:
    task = get_task("mbppplus")
    train = task.examples("train", data_dir=data_dir)
    scored = {e.task_id for e in task.examples("test", data_dir=data_dir)}
    assert len(train) == 263 and not {e.task_id for e in train} & scored
    assert all(601 <= int(e.task_id.split("/")[1]) <= 974 for e in train)
    assert [f["name"] for f in task.data_files("train", data_dir)] == ["mbpp/mbpp.jsonl", "mbppplus/MbppPlus.jsonl.gz"]
    problems = [e.meta["code_problem"] for e in train]
    verdicts = score_programs(problems, [p.program for p in problems], workers=2)
    assert all(v.base_passed for v in verdicts), [v.task_id for v in verdicts if not v.base_passed]
    stubs = score_programs(problems[:10], [p.prompt + f"def {p.entry_point}(*a):\n    return None\n"
                                           for p in problems[:10]], workers=2)
    assert not any(v.base_passed for v in stubs)
