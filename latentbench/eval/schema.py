"""Validation of results records against ``schemas/results.vN.schema.json`` (the version the record names)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from latentbench.errors import SchemaError
from latentbench.paths import SCHEMAS_DIR

VERSIONS = ("results.v1", "results.v2")  # every version still validates; new records are the last


@cache
def _validator(version: str) -> Any:
    import jsonschema

    schema = json.loads((SCHEMAS_DIR / f"{version}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def validate_results(record: dict[str, Any], where: str = "results record") -> None:
    """Raise ``SchemaError`` naming the first failing field."""
    version = record.get("schema_version")
    if version not in VERSIONS:
        raise SchemaError(f"{where}: field schema_version: {version!r} is not one of {', '.join(VERSIONS)}")
    error = next(iter(sorted(_validator(version).iter_errors(record), key=lambda e: list(e.path))), None)
    if error is not None:
        field = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise SchemaError(f"{where}: field {field}: {error.message} ({version}.schema.json)")
