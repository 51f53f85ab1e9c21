"""Dataset kinds and their JSON Schemas: which tables and arrays a kind has, and checking records.

A kind schema (``schemas/<kind>.v<N>.schema.json``) validates one example's records,
``{table: [row, ...]}``; each table's row schema sits in ``$defs/<table>`` with its sort key in
``x-key``. Columns that point into a ragged array carry ``x-array: <name>``; the arrays themselves
are declared under ``x-arrays`` (axes, allowed dtypes, optional index table the writer fills).

Rows are checked exactly with jsonschema on write (per example, small), and with an equivalent
vectorised check on load (:func:`check_frame`), which is why row schemas may only use the keywords
in ``COLUMN_KEYWORDS``.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentbench.errors import SchemaError, UsageError
from latentbench.paths import SCHEMAS_DIR

if TYPE_CHECKING:
    import polars as pl

# Keywords a column schema may use: exactly the ones check_frame enforces on load.
COLUMN_KEYWORDS = {"type", "items", "enum", "minimum", "maximum", "description", "unit", "x-array"}
_SCHEMA_FILE = re.compile(r"^(?P<kind>[a-z0-9-]+)\.v(?P<version>\d+)\.schema\.json$")
NON_KINDS = {"manifest", "results"}


@dataclass(frozen=True)
class TableSpec:
    name: str
    kind: str
    key: tuple[str, ...]
    row_schema: dict[str, Any]

    @property
    def columns(self) -> dict[str, dict[str, Any]]:
        return self.row_schema["properties"]

    @property
    def required(self) -> set[str]:
        return set(self.row_schema.get("required", []))

    def array_columns(self) -> dict[str, str]:
        """Column name -> array name, for columns holding array indices."""
        return {c: s["x-array"] for c, s in self.columns.items() if "x-array" in s}

    def polars_schema(self) -> dict[str, pl.DataType]:
        return {name: polars_dtype(spec) for name, spec in self.columns.items()}


@dataclass(frozen=True)
class ArraySpec:
    name: str
    kind: str
    axes: tuple[str, ...]
    dtypes: tuple[str, ...]
    index_table: str | None
    description: str

    @property
    def ndim(self) -> int:
        return len(self.axes)


@dataclass(frozen=True)
class KindSpec:
    kind: str
    version: int
    schema: dict[str, Any]
    tables: dict[str, TableSpec]
    arrays: dict[str, ArraySpec]

    @functools.cached_property
    def validator(self) -> Any:
        import jsonschema

        return jsonschema.Draft202012Validator(self.schema)


def available_kinds() -> dict[str, list[int]]:
    """Kind name -> schema versions shipped in ``schemas/``."""
    found: dict[str, list[int]] = {}
    for path in sorted(SCHEMAS_DIR.glob("*.schema.json")):
        m = _SCHEMA_FILE.match(path.name)
        if m and m["kind"] not in NON_KINDS:
            found.setdefault(m["kind"], []).append(int(m["version"]))
    return {k: sorted(v) for k, v in found.items()}


def schema_path(name: str, version: int) -> Path:
    return SCHEMAS_DIR / f"{name}.v{version}.schema.json"


@functools.cache
def load_schema(name: str, version: int = 1) -> dict[str, Any]:
    path = schema_path(name, version)
    if not path.is_file():
        raise SchemaError(f"{path}: no schema for {name!r} version {version}")
    return json.loads(path.read_text())


@functools.cache
def load_kind(kind: str, version: int = 1) -> KindSpec:
    """The spec of a kind; UsageError naming the known kinds if it does not exist."""
    known = available_kinds()
    if kind not in known:
        raise UsageError(f"unknown dataset kind {kind!r} (known: {', '.join(sorted(known))})")
    if version not in known[kind]:
        raise SchemaError(
            f"{kind} schema version {version} is not supported (this latentbench reads "
            f"{', '.join(f'v{v}' for v in known[kind])})"
        )
    schema = load_schema(kind, version)
    tables = {
        name: TableSpec(name, kind, tuple(row["x-key"]), row) for name, row in schema["$defs"].items()
    }
    arrays = {
        name: ArraySpec(
            name, kind, tuple(a["axes"]), tuple(a["dtypes"]), a.get("index_table"), a["description"]
        )
        for name, a in schema.get("x-arrays", {}).items()
    }
    return KindSpec(kind, version, schema, tables, arrays)


def polars_dtype(spec: dict[str, Any]) -> pl.DataType:
    import polars as pl

    types = [t for t in _types(spec) if t != "null"]
    if len(types) != 1:
        raise SchemaError(f"column schema must have exactly one non-null type, got {spec.get('type')!r}")
    simple = {"string": pl.String, "integer": pl.Int64, "number": pl.Float64, "boolean": pl.Boolean}
    if types[0] == "array":
        return pl.List(polars_dtype(spec["items"]))
    return simple[types[0]]()


def nullable(spec: dict[str, Any]) -> bool:
    return "null" in _types(spec)


def _types(spec: dict[str, Any]) -> list[str]:
    t = spec.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def validate_example(specs: list[KindSpec], records: dict[str, list[dict]], where: str) -> None:
    """Check one example's rows against their kinds' schemas; SchemaError on the first problem."""
    for spec in specs:
        mine = {t: rows for t, rows in records.items() if t in spec.tables}
        error = next(iter(spec.validator.iter_errors(mine)), None)
        if error is not None:
            loc = "/".join(str(p) for p in error.absolute_path)
            raise SchemaError(f"{where}: {spec.kind} record {loc or '(root)'}: {error.message}")


def check_frame(table: TableSpec, frame: pl.DataFrame) -> list[str]:
    """Vectorised equivalent of validating every row of ``frame`` against the table's row schema."""
    import polars as pl

    problems: list[str] = []
    missing = [c for c in table.columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in table.columns]
    if missing:
        problems.append(f"missing columns {missing}")
    if extra:
        problems.append(f"unexpected columns {extra}")
    for name, spec in table.columns.items():
        if name not in frame.columns:
            continue
        col = frame.get_column(name)
        want = polars_dtype(spec)
        if col.dtype != want and not (col.dtype == pl.Null and nullable(spec)):
            problems.append(f"column {name!r} has type {col.dtype}, schema wants {want}")
            continue
        if not nullable(spec) and col.null_count():
            problems.append(f"column {name!r} has {col.null_count()} nulls but is not nullable")
        values = col.explode().drop_nulls() if isinstance(want, pl.List) else col.drop_nulls()
        item = spec.get("items", spec) if isinstance(want, pl.List) else spec
        if isinstance(want, pl.List) and not nullable(item) and col.explode().null_count() > col.null_count():
            problems.append(f"column {name!r} has null list items")
        problems += _range_problems(name, values, item)
    return problems


def _range_problems(name: str, values: pl.Series, spec: dict[str, Any]) -> list[str]:
    out = []
    if "enum" in spec:
        bad = values.filter(~values.is_in([v for v in spec["enum"] if v is not None]))
        if len(bad):
            out.append(f"column {name!r} has value {bad[0]!r} not in {spec['enum']}")
    if "minimum" in spec and len(values) and values.min() < spec["minimum"]:
        out.append(f"column {name!r} has value {values.min()} below minimum {spec['minimum']}")
    if "maximum" in spec and len(values) and values.max() > spec["maximum"]:
        out.append(f"column {name!r} has value {values.max()} above maximum {spec['maximum']}")
    return out


def to_builtin(value: Any) -> Any:
    """numpy/torch scalars and sequences -> plain Python, so jsonschema and JSON see real types."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar/array, torch tensor
        return to_builtin(value.tolist())
    if hasattr(value, "item"):
        return to_builtin(value.item())
    raise SchemaError(f"value of type {type(value).__name__} cannot be stored in a table")
