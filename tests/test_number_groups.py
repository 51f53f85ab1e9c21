"""Numbers written with spaces as thousands separators (spaces, no-break and thin spaces) read as one."""

from __future__ import annotations

import pytest

from latentbench.tasks.answers import extract_number, normalize_number, numbers_equal


@pytest.mark.parametrize(("text", "expected"), [
    ("1 000 000", "1000000"),
    ("12 345.5", "12345.5"),
    ("1\u00a0000\u00a0000 people", "1000000"),  # no-break space
    ("about 1\u2009234 km", "1234"),  # thin space
    ("5\u202f000", "5000"),  # narrow no-break space
    ("-1 000", "-1000"),
    ("$1 250.50", "1250.5"),
])
def test_regular_groups_read_as_one_number(text: str, expected: str) -> None:
    assert extract_number(text, strict=False) == expected
    assert normalize_number(text) == expected


@pytest.mark.parametrize(("text", "last"), [
    ("1 00 000", "0"),  # groups of two: three numbers, not one
    ("12 3456", "3456"),  # a group of four
    ("1 000\u00a0000", "0"),  # one kind of separator per number
    ("2023 100", "100"),  # a year, then a count: the head may have at most three digits
    ("1 1/2", "1.5"),  # still a mixed fraction
])
def test_irregular_groups_are_not_joined(text: str, last: str) -> None:
    assert extract_number(text, strict=False) == last


def test_strict_markers_and_comparison_read_groups() -> None:
    assert extract_number("So the answer is 1 000 000.", strict=True) == "1000000"
    assert extract_number("#### 12 345", strict=True) == "12345"
    assert extract_number("The answer is 16 - 3 - 4 = 9", strict=True) == "9"
    assert numbers_equal("1 000 000", "1,000,000")
