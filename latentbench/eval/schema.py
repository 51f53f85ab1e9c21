"""Validation of results records against ``schemas/results.v1.schema.json``."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from latentbench.errors import SchemaError
from latentbench.paths import SCHEMAS_DIR

RESULTS_SCHEMA = SCHEMAS_DIR / "results.v1.schema.json"


@cache
def _validator() -> Any:
    import jsonschema

    schema = json.loads(RESULTS_SCHEMA.read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def validate_results(record: dict[str, Any], where: str = "results record") -> None:
    """Raise ``SchemaError`` naming the first failing field."""
    error = next(iter(sorted(_validator().iter_errors(record), key=lambda e: list(e.path))), None)
    if error is not None:
        field = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise SchemaError(f"{where}: field {field}: {error.message} ({RESULTS_SCHEMA.name})")
