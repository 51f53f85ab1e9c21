"""The ``evaluate`` metric modules load offline by path and score with latentbench's own parsing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from latentbench.errors import UsageError
from latentbench.metrics import metric_path
from latentbench.tasks import Example, get_task

CHECK = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


@pytest.fixture(scope="module")
def load(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Any]]:
    """``evaluate.load`` of a kind, offline, with its module copy and arrow cache in a tmp dir (evaluate
    reads its cache paths at import, so they are patched on its config rather than set in the env)."""
    import evaluate

    root = tmp_path_factory.mktemp("hf-evaluate")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_EVALUATE_OFFLINE", "1")
        mp.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
        mp.setattr(evaluate.config, "HF_MODULES_CACHE", root / "modules")
        yield lambda kind: evaluate.load(metric_path(kind), cache_dir=str(root / "cache"), keep_in_memory=True)


def test_metric_path_names_a_module_dir_with_its_script() -> None:
    for kind in ("number", "choice", "code"):
        path = Path(metric_path(kind))
        assert (path / f"latentbench_{kind}.py").is_file()
    with pytest.raises(UsageError, match="metric kind 'text'"):
        metric_path("text")


def test_number(load: Callable[[str], Any]) -> None:
    metric = load("number")
    predictions = ["The answer is 42.", "\\boxed{7}", "I think it is 5", "The answer is 3.", "#### 1,000"]
    references = ["42", "7", "5", "4", "1000"]
    # strict: markers only (the third has none); flexible: else the last number
    assert metric.compute(predictions=predictions, references=references) == {
        "accuracy_strict": pytest.approx(3 / 5), "accuracy_flexible": pytest.approx(4 / 5)}
    with pytest.raises(ValueError, match=r"references\[0\] = 'forty': holds no number"):
        metric.compute(predictions=["42"], references=["forty"])


def test_number_agrees_with_task_scoring(load: Callable[[str], Any]) -> None:
    task = get_task("gsm8k")
    outputs = ["So 3 + 4 = 7. The answer is 7.", "The answer is 16 - 3 - 4 = 9", "$1,000.50 total", "x2 is 3",
               "Answer: **-2.5**", "1/2 of them, \\frac{3}{4}"]
    gold = ["7", "9", "1000.5", "2", "-2.5", "0.75"]
    metric = load("number")
    for out, g in zip(outputs, gold, strict=True):
        verdict = task.score(Example("q", "?", g), out).correct
        assert metric.compute(predictions=[out], references=[g]) == {
            f"accuracy_{v}": float(verdict[v]) for v in ("strict", "flexible")}, out


def test_choice(load: Callable[[str], Any]) -> None:
    metric = load("choice")
    predictions = ["(B)", "The answer is (C).", "I would prescribe aspirin.", "**A** is tempting, but the answer is D",
                   "no idea"]
    references = ["B", "C", "A", "D", "A"]
    options = [None, None, {"A": "aspirin", "B": "ibuprofen", "C": "heparin", "D": "warfarin"}, None, None]
    # strict: only "answer is X" counts (2 and 4); flexible adds the lone "(B)" and the option text
    assert metric.compute(predictions=predictions, references=references, options=options) == {
        "accuracy_strict": pytest.approx(2 / 5), "accuracy_flexible": pytest.approx(4 / 5)}
    assert metric.compute(predictions=predictions, references=references)["accuracy_flexible"] == pytest.approx(3 / 5)
    for bad in ("(B)", "b", "E"):
        with pytest.raises(ValueError, match="expected one letter of ABCD"):
            metric.compute(predictions=["(B)"], references=[bad])


def test_code_pass_at_1(load: Callable[[str], Any]) -> None:
    metric = load("code")
    add = {"test": CHECK, "entry_point": "add", "prompt": ""}
    with_prompt = {"test": CHECK, "entry_point": "add", "prompt": 'def add(a, b):\n    """Sum."""\n'}
    predictions = [
        "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```\nDone.",  # passes
        "def add(a, b):\n    return a - b\n",  # fails the check
        "    return a + b\n",  # a body continuing the prompt: passes
    ]
    result = metric.compute(predictions=predictions, references=[add, add, with_prompt], workers=1)
    assert result == {"pass@1": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match=r"references\[0\]: needs 'test'"):
        metric.compute(predictions=["x"], references=[{"test": "assert True", "entry_point": "add", "prompt": ""}])
