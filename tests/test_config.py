"""Config values are typed by the field's annotation, never guessed from the default."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import pytest

from latentbench.config import ConfigError, build_config, config_fields, option, parse_value
from latentbench.errors import UsageError


@dataclass
class Sample:
    count: int = option(2, "A count.")
    ratio: float = option(0.5, "A ratio.")
    name: str = option("x", "A name.")
    flag: bool = option(False, "A flag.")
    limit: int | None = option(None, "Optional: None arrives as None, 7 as an int.")
    mode: Literal["a", "b"] = option("a", "A choice.")
    roles: dict[str, str] = option(help="A mapping.", factory=dict)
    sizes: list[int] = option(help="A list.", factory=list)

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ConfigError("count", "must be >= 0")


@pytest.mark.parametrize(("field", "raw", "expected"), [
    ("count", "3", 3), ("ratio", "1e-3", 1e-3), ("name", "42", "42"),
    ("flag", "true", True), ("flag", "no", False), ("flag", True, True),
    ("limit", "none", None), ("limit", "", None), ("limit", "7", 7), ("limit", None, None),
    ("mode", "b", "b"),
    ("roles", '{"planner": "Plan it."}', {"planner": "Plan it."}), ("roles", "{judge: Decide}", {"judge": "Decide"}),
    ("roles", {"a": "b"}, {"a": "b"}),
    ("sizes", "1,2,3", [1, 2, 3]), ("sizes", "[4, 5]", [4, 5]), ("sizes", [6], [6]),
])
def test_values_are_parsed_by_annotation(field: str, raw, expected) -> None:
    config = build_config(Sample, {field: raw})
    assert getattr(config, field) == expected and type(getattr(config, field)) is type(expected)


@pytest.mark.parametrize(("field", "raw", "needle"), [
    ("count", "2.5", "expected int"), ("count", "many", "expected int"), ("flag", "maybe", "true or false"),
    ("mode", "c", "expected one of a, b"), ("roles", "[1, 2]", "expected a mapping"),
    ("sizes", "a,b", "expected int"), ("limit", "soon", "expected int | None"),
])
def test_bad_values_name_the_source(field: str, raw: str, needle: str) -> None:
    with pytest.raises(UsageError, match=rf"^--{field}={re.escape(raw)}: .*{re.escape(needle)}"):
        build_config(Sample, {field: raw}, {field: f"--{field.replace('_', '-')}"})


def test_unknown_field_and_config_error_use_the_source() -> None:
    with pytest.raises(UsageError, match="--method-arg colour: unknown option; Sample has count, ratio"):
        build_config(Sample, {"colour": "red"}, {"colour": "--method-arg colour"})
    with pytest.raises(UsageError, match="^--count: must be >= 0$"):
        build_config(Sample, {"count": "-1"}, {"count": "--count"})
    with pytest.raises(UsageError, match="^count: must be >= 0$"):  # library callers see the field name
        build_config(Sample, {"count": -1})


def test_fields_carry_type_default_and_help() -> None:
    fields = {f.name: f for f in config_fields(Sample)}
    assert fields["limit"].type_name == "int | None" and fields["limit"].default is None
    assert fields["roles"].type_name == "dict[str, str]" and fields["roles"].default == {}
    assert fields["mode"].type_name == "a|b" and fields["count"].help == "A count."
    assert fields["sizes"].flag == "--sizes"


def test_parse_value_rejects_bools_as_numbers() -> None:
    with pytest.raises(ValueError):
        parse_value(int, True)
