"""Versioned dataset store: Parquet tables + Zarr v3 ragged arrays + manifest + Hub card.

    from latentbench.store import DatasetWriter, open_dataset

Exports are resolved lazily so that ``import latentbench.cli.store`` (done by the CLI) does not
pull in polars, zarr or datasets.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from latentbench.store.hub import pull, push
    from latentbench.store.reader import Dataset, open_dataset
    from latentbench.store.schema import available_kinds, load_kind
    from latentbench.store.validate import validate_dataset
    from latentbench.store.writer import DatasetWriter, ExampleWriter

_EXPORTS = {
    "DatasetWriter": "writer", "ExampleWriter": "writer",
    "Dataset": "reader", "open_dataset": "reader",
    "validate_dataset": "validate",
    "push": "hub", "pull": "hub",
    "available_kinds": "schema", "load_kind": "schema",
}
__all__ = ["Dataset", "DatasetWriter", "ExampleWriter", "available_kinds", "load_kind", "open_dataset", "pull",
           "push", "validate_dataset"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"latentbench.store.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'latentbench.store' has no attribute {name!r}")
