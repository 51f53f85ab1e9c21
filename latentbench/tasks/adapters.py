"""Per-task record adapters: one raw record (as the source file has it) -> one ``Example``.

Each adapter parses the gold answer itself, so a gold that does not parse fails loudly here,
naming the record, instead of silently scoring every prediction wrong.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

from latentbench.errors import DataFormatError
from latentbench.tasks.card import TaskCard
from latentbench.tasks.example import Example

LETTERS = "ABCD"
Adapter = Callable[[TaskCard, str, int, dict[str, Any]], Example]


def _field(card: TaskCard, record: dict[str, Any], key: str, where: str) -> Any:
    name = card.fields[key]
    if name not in record:
        raise DataFormatError(f"{card.name} {where}: missing field {name!r} (task card fields.{key})")
    return record[name]


def gsm8k(card: TaskCard, split: str, index: int, record: dict[str, Any]) -> Example:
    from latentbench.tasks.answers import parse_gsm8k_gold

    where = f"{split} record {index}"
    solution = _field(card, record, "answer", where)
    try:
        gold = parse_gsm8k_gold(solution)
    except ValueError as err:
        raise DataFormatError(f"{card.name} {where}: gold answer does not parse ({err})") from err
    return Example(f"{card.name}/{split}/{index}", _field(card, record, "question", where), gold,
                   meta={"solution": solution}, task_id=str(index))


def medqa(card: TaskCard, split: str, index: int, record: dict[str, Any]) -> Example:
    where = f"{split} record {index}"
    options = _field(card, record, "options", where)
    gold = _field(card, record, "answer", where)
    if not isinstance(options, dict) or sorted(options) != list(LETTERS) or gold not in options:
        raise DataFormatError(f"{card.name} {where}: expected options A-D and answer_idx among them")
    return Example(f"{card.name}/{split}/{index}", _field(card, record, "question", where), gold,
                   choices={k: str(options[k]) for k in LETTERS}, task_id=str(index))


def gpqa(card: TaskCard, split: str, index: int, record: dict[str, Any]) -> Example:
    """Options are shuffled with a seed derived from the record id, so the right answer is not always A
    and every run (any --seed) shows the same order for the same question."""
    where = f"{split} record {index}"
    record_id = _field(card, record, "id", where)
    correct = str(_field(card, record, "correct", where)).strip()
    wrong = [str(record.get(name, "")).strip() for name in card.fields["incorrect"]]
    if not correct or not all(wrong):
        raise DataFormatError(f"{card.name} {where}: expected a correct and three incorrect answers")
    options = [correct, *wrong]
    random.Random(int(hashlib.sha256(record_id.encode()).hexdigest()[:16], 16)).shuffle(options)
    return Example(f"{card.name}/{split}/{record_id}", str(_field(card, record, "question", where)).strip(),
                   LETTERS[options.index(correct)], choices=dict(zip(LETTERS, options, strict=True)),
                   task_id=str(record_id))


def _code(card: TaskCard, split: str, index: int, record: dict[str, Any], kind: str) -> Example:
    from latentbench.tasks.code_eval import CodeProblem

    where = f"{split} record {index}"
    task_id = str(_field(card, record, "id", where))
    try:
        problem = CodeProblem.from_humaneval(record) if kind == "humaneval" else CodeProblem.from_mbppplus(record)
    except (KeyError, TypeError, ValueError) as err:
        raise DataFormatError(f"{card.name} {where}: not a {kind} problem ({err})") from err
    return Example(f"{card.name}/{split}/{task_id.split('/')[-1]}", problem.prompt, problem.canonical_solution,
                   meta={"code_problem": problem}, task_id=task_id)


def humaneval(card: TaskCard, split: str, index: int, record: dict[str, Any]) -> Example:
    return _code(card, split, index, record, "humaneval")


def mbppplus(card: TaskCard, split: str, index: int, record: dict[str, Any]) -> Example:
    return _code(card, split, index, record, "mbppplus")


ADAPTERS: dict[str, Adapter] = {"gsm8k": gsm8k, "medqa": medqa, "gpqa": gpqa, "humaneval": humaneval,
                                "mbppplus": mbppplus}
