"""Reading one Parquet table file, with a one-line error for a missing or unreadable file.

Readers check the file's sha256 first (``store.integrity``); this is the last line of defence.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from latentbench.errors import DatasetIntegrityError

if TYPE_CHECKING:
    import polars as pl


def read_parquet(path: Path) -> pl.DataFrame:
    import polars as pl

    if not path.is_file():
        raise DatasetIntegrityError(f"{path}: missing Parquet file (listed in manifest.json)")
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DatasetIntegrityError(f"{path}: not a readable Parquet file ({_reason(exc)})") from None
    except BaseException as exc:  # a Rust panic in polars is pyo3's PanicException, a BaseException
        if type(exc).__name__ != "PanicException":
            raise
        raise DatasetIntegrityError(f"{path}: not a readable Parquet file (reader panic: {_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
