"""Hugging Face ``evaluate`` metric modules that score with latentbench's own answer parsing.

    import evaluate
    from latentbench.metrics import metric_path

    number = evaluate.load(metric_path("number"))
    number.compute(predictions=["So the answer is 42."], references=["42"])
    # {'accuracy_strict': 1.0, 'accuracy_flexible': 1.0}

``evaluate.load`` wants a directory holding a script of the same name, so each kind is
``latentbench_<kind>/latentbench_<kind>.py``. The scripts are thin: the scoring is latentbench's
(``score_text``, ``extract_code``, the sandbox), so a metric module and ``latentbench eval`` give the
same verdict for the same output.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from latentbench.errors import UsageError

KINDS = ("number", "choice", "code")
CHOICE_LETTERS = "ABCD"  # the letters Task scoring reads (extract_choice's default)


def metric_path(kind: str) -> str:
    """The directory of the metric module for answer kind ``kind``, for ``evaluate.load``."""
    if kind not in KINDS:
        raise UsageError(f"metric kind {kind!r}: expected one of {', '.join(KINDS)}")
    return str(Path(__file__).resolve().parent / f"latentbench_{kind}")


def text_accuracy(kind: str, predictions: Sequence[str], references: Sequence[str],
                  options: Sequence[dict[str, str] | None] | None = None) -> dict[str, float]:
    """``accuracy_strict`` and ``accuracy_flexible`` of number or choice outputs against gold answers."""
    from latentbench.tasks.answers import normalize_number
    from latentbench.tasks.task import score_text

    _check_lengths(predictions, references)
    if options is not None and len(options) != len(predictions):
        raise UsageError(f"options: {len(options)} entries for {len(predictions)} predictions")
    for i, gold in enumerate(references):
        # A gold that cannot match would silently score every prediction wrong: refuse it instead.
        if kind == "number" and normalize_number(gold) is None:
            raise UsageError(f"references[{i}] = {gold!r}: holds no number")
        if kind == "choice" and (len(gold) != 1 or gold not in CHOICE_LETTERS):
            raise UsageError(f"references[{i}] = {gold!r}: expected one letter of {CHOICE_LETTERS}")
    opts = options if options is not None else [None] * len(predictions)
    scores = [score_text(kind, out, gold, o) for out, gold, o in zip(predictions, references, opts, strict=True)]
    return {f"accuracy_{v}": sum(s.correct[v] for s in scores) / len(scores) for v in ("strict", "flexible")}


def code_pass_at_1(predictions: Sequence[str], references: Sequence[dict[str, Any]], *, workers: int = 2,
                   timeout_s: float = 10.0) -> dict[str, float]:
    """``pass@1`` of one completion per HumanEval-style problem (``test``, ``entry_point``, ``prompt``),
    each program extracted as ``eval`` does and run against ``check`` in the sandbox."""
    from latentbench.tasks.answers import extract_code
    from latentbench.tasks.code_eval import CodeProblem, score_programs

    _check_lengths(predictions, references)
    problems = []
    for i, ref in enumerate(references):
        test, entry_point = ref.get("test"), ref.get("entry_point")
        if not test or "def check" not in test or not entry_point:
            raise UsageError(f"references[{i}]: needs 'test' (code defining check(candidate)) and 'entry_point'")
        problems.append(CodeProblem(f"reference/{i}", ref.get("prompt") or "", entry_point, "", "humaneval",
                                    test=test))
    programs = [extract_code(out, p.prompt, p.entry_point) for out, p in zip(predictions, problems, strict=True)]
    verdicts = score_programs(problems, programs, workers=workers, timeout_s=timeout_s)
    return {"pass@1": sum(v.base_passed for v in verdicts) / len(verdicts)}


def _check_lengths(predictions: Sequence[Any], references: Sequence[Any]) -> None:
    if len(predictions) != len(references):
        raise UsageError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise UsageError("no predictions to score")
