"""Every gold answer of GSM8K and MedQA parses, and our extractors read it back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latentbench.tasks.answers import extract_choice, extract_number, normalize_number, parse_gsm8k_gold


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# split -> (rows, golds written with thousands separators)
GSM8K = {"test": (1319, 14), "train": (7473, 79)}


@pytest.mark.parametrize("split", sorted(GSM8K))
def test_gsm8k_golds(data_dir: Path, split: str) -> None:
    rows = _rows(data_dir / "gsm8k" / f"{split}.jsonl")
    n_rows, n_commas = GSM8K[split]
    assert len(rows) == n_rows
    raws = [row["answer"].rpartition("#### ")[2].strip() for row in rows]
    assert sum("," in raw for raw in raws) == n_commas
    for raw, row in zip(raws, rows, strict=True):
        gold = parse_gsm8k_gold(row["answer"])
        assert gold == raw.replace(",", ""), raw  # every gold is a plain integer once commas go
        assert extract_number("#### " + raw, strict=True) == gold


def test_gsm8k_test_golds_with_commas_keep_every_digit(data_dir: Path) -> None:
    """The 14 golds that a popular regex truncates at the first comma ("1,450,000" -> "1")."""
    rows = _rows(data_dir / "gsm8k" / "test.jsonl")
    raws = [row["answer"].rpartition("#### ")[2].strip() for row in rows]
    with_commas = [raw for raw in raws if "," in raw]
    assert len(with_commas) == 14
    assert "1,450,000" in with_commas
    assert normalize_number("1,450,000") == "1450000"
    for raw in with_commas:
        assert normalize_number(raw) == raw.replace(",", "")
        assert int(normalize_number(raw)) >= 1000


# split -> rows, and how many answers the option text alone does not pick out
MEDQA = {"test": (1273, 1), "dev": (1272, 0)}


@pytest.mark.parametrize("split", sorted(MEDQA))
def test_medqa_golds(data_dir: Path, split: str) -> None:
    rows = _rows(data_dir / "medqa" / f"phrases_no_exclude_{split}.jsonl")
    n_rows, n_misread = MEDQA[split]
    assert len(rows) == n_rows
    misread = []
    for row in rows:
        idx, options = row["answer_idx"], row["options"]
        assert sorted(options) == ["A", "B", "C", "D"] and idx in options
        assert options[idx] == row["answer"]
        assert extract_choice(f"The answer is ({idx}).", options, strict=True) == idx
        assert extract_choice(options[idx], options, strict=True) is None  # option text is no marker
        if extract_choice(options[idx], options) != idx:
            misread.append(options)
    # Measured: no answer is ambiguous (an option seen only inside a longer one does not count;
    # without that rule test has 8 ambiguous answers, dev 10). The one misread in test has options
    # that are letters themselves ("B", "C", "D", "E"): the text "B" of option A reads as letter B.
    assert len(misread) == n_misread
    assert all(all(len(text) == 1 for text in options.values()) for options in misread)
