"""Reading one Parquet table file, with a one-line error for a missing or unreadable file."""

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
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetIntegrityError(f"{path}: not a readable Parquet file ({reason})") from None
