"""A task: its card, its examples, how a prompt is written, and how an output is scored."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentbench.errors import DataFormatError, UsageError
from latentbench.tasks.adapters import ADAPTERS
from latentbench.tasks.card import TaskCard
from latentbench.tasks.example import Example
from latentbench.tasks.sources import data_files, read_records


@dataclass
class Score:
    """One scored output. ``correct`` maps each reported variant to a verdict:
    number/choice -> {"strict", "flexible"}; code -> {"base", "plus"} (HumanEval: {"base"})."""

    extracted: dict[str, str | None]
    correct: dict[str, bool]
    detail: str = ""


class Task:
    def __init__(self, card: TaskCard) -> None:
        if card.adapter not in ADAPTERS:
            raise DataFormatError(f"{card.path}: adapter {card.adapter!r} is not one of {', '.join(ADAPTERS)}")
        self.card = card
        self.name = card.name

    @property
    def variants(self) -> tuple[str, ...]:
        if self.card.answer_kind != "code":
            return ("strict", "flexible")
        return ("base",) if self.card.adapter == "humaneval" else ("base", "plus")

    @property
    def primary_variant(self) -> str:
        """The verdict a single correct/incorrect label uses: flexible for text, plus (HumanEval: base) for code."""
        return self.variants[-1]

    def split(self, split: str | None) -> str:
        split = split or self.card.default_split
        if split not in self.card.splits:
            raise UsageError(f"--split {split!r}: task {self.name} has splits {', '.join(self.card.splits)}")
        return split

    def examples(self, split: str | None = None, *, limit: int | None = None, data_dir: Path | None = None,
                 allow_modified_data: bool = False) -> list[Example]:
        """The split's examples in source order; ``limit`` takes the first N (the same N for every method).
        A local data file must match its card's sha256 unless ``allow_modified_data`` (DataModifiedError)."""
        split = self.split(split)
        if limit is not None and limit < 1:
            raise UsageError(f"--limit must be at least 1, got {limit}")
        records = read_records(self.card, split, data_dir, allow_modified=allow_modified_data)
        records = records[:limit] if limit else records
        adapter = ADAPTERS[self.card.adapter]
        return [adapter(self.card, split, i, record) for i, record in enumerate(records)]

    def data_files(self, split: str | None = None, data_dir: Path | None = None) -> list[dict[str, Any]]:
        """The data the split is read from, as results and manifests record it (name, sha256, pin, modified)."""
        return data_files(self.card, self.split(split), data_dir)

    def prompt(self, example: Example) -> str:
        """The user message (methods apply the model's chat template around it)."""
        choices = "\n".join(f"{k}. {v}" for k, v in (example.choices or {}).items())
        return self.card.prompt.format_map({"question": example.question, "choices": choices})

    def score(self, example: Example, output: str) -> Score:
        """Score one output; code outputs run in the sandbox (use ``score_many`` to run them in parallel)."""
        return self.score_many([example], [output])[0]

    def score_many(self, examples: list[Example], outputs: list[str], *, workers: int = 2) -> list[Score]:
        if self.card.answer_kind == "code":
            return self._score_code(examples, outputs, workers)
        return [self._score_text(ex, out) for ex, out in zip(examples, outputs, strict=True)]

    def _score_text(self, example: Example, output: str) -> Score:
        return score_text(self.card.answer_kind, output, example.gold, example.choices)

    def _score_code(self, examples: list[Example], outputs: list[str], workers: int) -> list[Score]:
        """Extract each program, then run them all in the sandbox in parallel workers."""
        from latentbench.tasks.answers import extract_code
        from latentbench.tasks.code_eval import score_programs

        problems = [ex.meta["code_problem"] for ex in examples]
        programs = [extract_code(out, p.prompt, p.entry_point) for out, p in zip(outputs, problems, strict=True)]
        verdicts = score_programs(problems, programs, workers=workers)
        scores = []
        for program, verdict in zip(programs, verdicts, strict=True):
            correct = {"base": bool(verdict.base_passed)}
            if "plus" in self.variants:
                correct["plus"] = bool(verdict.plus_passed)
            scores.append(Score({"program": program}, correct, verdict.detail))
        return scores

    def gold_output(self, example: Example) -> str:
        """A model-style output stating the gold answer; scoring it must be correct (the gold-parse check)."""
        if self.card.answer_kind == "code":
            problem = example.meta["code_problem"]
            return f"```python\n{problem.prompt}{problem.canonical_solution}\n```"
        if self.card.answer_kind == "choice":
            return f"The answer is ({example.gold})."
        return f"The answer is {example.gold}."

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "answer_kind": self.card.answer_kind, "splits": list(self.card.splits),
                "default_split": self.card.default_split, "license": self.card.license,
                "description": self.card.description}


def score_text(kind: str, output: str, gold: str, choices: dict[str, str] | None = None) -> Score:
    """Score a number or choice ``output`` against ``gold`` without a Task (the metric modules use it too):
    the strict and flexible readings and their verdicts. ``choices`` (letter -> option text) lets the
    flexible choice reading fall back to an option's text."""
    from latentbench.tasks import answers

    found = answers.extract(output, kind, choices)  # type: ignore[arg-type]  # ValueError for "code"
    extracted = {"strict": found.strict, "flexible": found.flexible}
    return Score(extracted, {v: _matches(kind, value, gold) for v, value in extracted.items()})


def _matches(kind: str, predicted: str | None, gold: str) -> bool:
    from latentbench.tasks.answers import numbers_equal

    if predicted is None:
        return False
    return numbers_equal(predicted, gold) if kind == "number" else predicted == gold
