"""Training rows from one or more store datasets, split into train/validation by question id.

A question's rows all go to the same side, chosen by a hash of its ``example_id`` (not by row order or
seed), so the validation set stays put across runs, seeds and dataset orderings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from latentbench.errors import DataNotFoundError, UsageError
from latentbench.provenance import sha256_file
from latentbench.store.manifest import MANIFEST
from latentbench.store.reader import Dataset, open_dataset

if TYPE_CHECKING:
    import polars as pl
    import torch

Split = Literal["train", "val"]
SOURCE = "_dataset"  # column tagging each row with the index of the dataset it came from


def question_hash(example_id: str) -> float:
    """A stable number in [0, 1) for a question id (first 8 bytes of its sha256)."""
    return int.from_bytes(hashlib.sha256(example_id.encode()).digest()[:8], "big") / 2**64


def split_questions(ids: Sequence[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """(train, val) question ids, each sorted. With >= 2 questions and val_fraction > 0 both are
    non-empty: the lowest-hash question is moved to val, or the highest-hash one to train."""
    ranked = sorted(set(ids), key=lambda q: (question_hash(q), q))
    val = {q for q in ranked if question_hash(q) < val_fraction}
    if len(ranked) >= 2 and val_fraction > 0:
        if not val:
            val.add(ranked[0])
        if len(val) == len(ranked):
            val.discard(ranked[-1])
    return sorted(q for q in ranked if q not in val), sorted(val)


def open_training_dataset(spec: str | Path, table: str) -> Dataset:
    """A dataset that has ``table``; UsageError naming the path and what was expected otherwise."""
    path = Path(spec).expanduser()
    if path.is_dir() and not (path / MANIFEST).is_file():
        raise UsageError(f"{path}: no {MANIFEST} (expected a dataset directory written by latentbench generate)")
    try:
        ds = open_dataset(spec)
    except DataNotFoundError:
        raise UsageError(f"{spec}: no such dataset (expected a dataset directory or a Hub id "
                         "owner/name[@revision])") from None
    if table not in ds.tables:
        raise UsageError(f"{ds.path}: dataset of kind {ds.kind} has no table {table!r} to train on "
                         f"(tables: {', '.join(ds.tables) or 'none'})")
    return ds


@dataclass
class BatchOrder:
    """Row indices in a fresh permutation per epoch, drawn from (seed, epoch) alone: resumable from
    (epoch, position) without replaying anything."""

    n: int
    batch_size: int
    seed: int
    epoch: int = 0
    position: int = 0

    def next(self) -> list[int]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        batch = order[self.position : self.position + self.batch_size].tolist()
        self.position += len(batch)
        if self.position >= self.n:
            self.epoch, self.position = self.epoch + 1, 0
        return batch


class TrainData:
    """The ``table`` rows of every dataset in ``specs``, tagged with their source, split by question id."""

    def __init__(self, specs: Sequence[str | Path], table: str, *, val_fraction: float = 0.1,
                 limit: int | None = None, where: Callable[[dict[str, Any]], bool] | None = None) -> None:
        import polars as pl

        if not specs:
            raise UsageError("no training datasets given (expected at least one dataset directory)")
        self.table = table
        self.datasets = [open_training_dataset(s, table) for s in specs]
        frames = [ds.table(table).with_columns(pl.lit(i, dtype=pl.Int32).alias(SOURCE))
                  for i, ds in enumerate(self.datasets)]
        frame: pl.DataFrame = pl.concat(frames, how="diagonal_relaxed")
        ids = sorted(set(frame["example_id"].to_list()))
        if limit is not None:
            ids = ids[:limit]
        train, val = split_questions(ids, val_fraction)
        self._ids: dict[Split, list[str]] = {"train": train, "val": val}
        self._rows: dict[Split, list[dict[str, Any]]] = {
            split: [row for row in frame.filter(pl.col("example_id").is_in(q)).to_dicts() if where is None or where(row)]
            for split, q in self._ids.items()}  # ``where``: the trainer's row filter (keep_row)
        self._columns = [ds.table_spec(table).array_columns() for ds in self.datasets]

    def __repr__(self) -> str:
        return (f"TrainData(table={self.table!r}, datasets={len(self.datasets)}, "
                f"train={len(self._rows['train'])} rows/{len(self._ids['train'])} questions, "
                f"val={len(self._rows['val'])} rows/{len(self._ids['val'])} questions)")

    def rows(self, split: Split) -> list[dict[str, Any]]:
        """The split's rows (datasets in the order given, each in key order); ``_dataset`` names the source."""
        return self._rows[split]

    def question_ids(self, split: Split) -> list[str]:
        return list(self._ids[split])

    def dataset(self, row: dict[str, Any]) -> Dataset:
        return self.datasets[row[SOURCE]]

    def array(self, row: dict[str, Any], column: str) -> torch.Tensor | None:
        """The tensor a reference column (e.g. ``latent_ref``) of ``row`` points at; None for a null ref."""
        ref = row[column]
        if ref is None:
            return None
        columns = self._columns[row[SOURCE]]
        if column not in columns:
            raise KeyError(f"{self.table}.{column} is not an array reference (those are: {', '.join(columns)})")
        return self.dataset(row).array(columns[column], int(ref), torch=True)

    def generator(self) -> dict[str, Any]:
        """The one model (id and weights sha256) every dataset was made with: a learned part reads one
        model's hidden states, so datasets of several are refused."""
        models = {(ds.manifest["model"].get("id"), ds.manifest["model"].get("sha256")): ds.path for ds in self.datasets}
        if len(models) > 1:
            listed = "; ".join(f"{path}: {mid} ({(sha or '?')[:12]})" for (mid, sha), path in models.items())
            raise UsageError(f"the datasets come from different generators ({listed}); a learned part reads one "
                             "generator's states")
        (model_id, sha), = models
        return {"id": model_id, "sha256": sha}

    def manifest_hashes(self) -> list[dict[str, str]]:
        """Each dataset's path, kind, version and manifest.json sha256 (what provenance records)."""
        return [{"path": str(ds.path.resolve()), "kind": ds.kind, "version": ds.version,
                 "manifest_sha256": sha256_file(ds.path / MANIFEST)} for ds in self.datasets]
