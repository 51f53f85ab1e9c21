"""Writing a dataset one example at a time, resumably.

    w = DatasetWriter(path, kind="latent-tree", info={...}, extra_kinds=["kv-shard"])
    for example in task:
        if example.id in w.completed_ids():
            continue
        with w.example(example.id) as ex:   # committed on clean exit, discarded on error or kill
            ref = ex.add_array("kv", kv)    # -> global index into the ragged array "kv"
            ex.add_rows("nodes", [{..., "kv_ref": ref}])
    w.finalize()

Examples are staged in a journal (see journal.py), their array bytes streamed straight into the Zarr
shard files (streams.py, written once); ``finalize`` builds the Parquet tables, the arrays' index
and metadata, the card and the manifest from it deterministically, so a run that was killed and
resumed yields the same bytes as one that was not.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from latentbench.errors import SchemaError, UsageError
from latentbench.paths import check_writable_dir
from latentbench.provenance import git_sha, package_versions
from latentbench.store import build
from latentbench.store.arrays import (
    CODECS,
    DEFAULT_CHUNK_ELEMENTS,
    DEFAULT_CODEC,
    DEFAULT_SHARD_BYTES,
    to_storage,
)
from latentbench.store.background import BackgroundWorker
from latentbench.store.journal import Journal
from latentbench.store.manifest import MANIFEST, check_info, created_now
from latentbench.store.schema import ArraySpec, KindSpec, TableSpec, load_kind, to_builtin, validate_example
from latentbench.store.streams import ArrayStreams

JOURNAL = ".journal"
DEFAULT_ROWS_PER_FILE = 1_000_000


def check_target(path: Path, flag: str = "") -> None:
    """UsageError (one line) unless a dataset can be written (or resumed) at ``path``: refuses a file, a
    directory holding something other than a dataset, and one this process cannot write in. Cheap, so
    commands call it before loading a model."""
    if (path / MANIFEST).is_file():  # finished: re-running is a no-op (or refused by its arguments)
        return
    where = f"{flag} {path}" if flag else str(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{where}: exists and is not a directory")
    if path.is_dir() and not Journal(path / JOURNAL).exists() and any(path.iterdir()):
        raise UsageError(f"{where}: directory is not empty and holds no dataset in progress; refusing to write into it")
    check_writable_dir(path, flag)


class DatasetWriter:
    """Appends examples (table rows + tensors) to the dataset at ``path``; see the module docstring."""

    def __init__(
        self,
        path: str | Path,
        kind: str,
        info: dict[str, Any],
        extra_kinds: list[str] | tuple[str, ...] = (),
        *,
        codec: str = DEFAULT_CODEC,
        chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
        shard_bytes: int = DEFAULT_SHARD_BYTES,
        rows_per_file: int = DEFAULT_ROWS_PER_FILE,
        durable: bool = True,
    ) -> None:
        if codec not in CODECS:
            raise UsageError(f"unknown codec {codec!r} (choose from {', '.join(CODECS)})")
        if chunk_elements < 1 or shard_bytes < 1 or rows_per_file < 1:
            raise UsageError("chunk_elements, shard_bytes and rows_per_file must be positive")
        self.path = Path(path)
        self.kind = kind
        self.specs: list[KindSpec] = [load_kind(k) for k in dict.fromkeys([kind, *extra_kinds])]
        self.tables: dict[str, TableSpec] = {}
        self.arrays: dict[str, ArraySpec] = {}
        for spec in self.specs:
            for name in [*spec.tables, *spec.arrays]:
                if name in self.tables or name in self.arrays:
                    raise UsageError(f"kinds {kind} and {spec.kind} both define {name!r}")
            self.tables.update(spec.tables)
            self.arrays.update(spec.arrays)
        self.args = {"kind": kind, "extra_kinds": [s.kind for s in self.specs[1:]], "info": check_info(info),
                     "codec": codec, "chunk_elements": chunk_elements, "shard_bytes": shard_bytes,
                     "rows_per_file": rows_per_file}
        self.durable = durable  # not in args: it changes no byte of the dataset, only what survives power loss
        self._journal = Journal(self.path / JOURNAL, durable)
        self.streams = ArrayStreams(self.path / JOURNAL / "arrays", codec=codec, chunk_elements=chunk_elements,
                                    shard_bytes=shard_bytes, durable=durable)
        self._background = BackgroundCommits(self._journal, self.streams)
        self._finalized: dict[str, Any] | None = None
        self._completed: set[str] = set()
        self._counts = dict.fromkeys(self.arrays, 0)  # committed items per array
        self._dtypes: dict[str, str] = {}
        self._seq = 0
        self._open()

    # -- opening / resuming -------------------------------------------------------------------------
    def _open(self) -> None:
        manifest = self.path / MANIFEST
        if manifest.is_file():  # finished before (maybe killed while removing the journal)
            self._finalized = build.check_finished(self.path, self.args)
            shutil.rmtree(self.path / JOURNAL, ignore_errors=True)
            shutil.rmtree(self.path / build.STAGING, ignore_errors=True)
            self._completed = build.finished_example_ids(self.path, self._finalized)
            return
        check_target(self.path)
        meta = {**self.args, "created": created_now(), "git_sha": git_sha(), "packages": package_versions()}
        self.meta = self._journal.open(meta, compare=list(self.args))
        entries = self._journal.entries()
        for entry in entries:
            self._completed.add(entry.example_id)
            for spec in entry.header["arrays"]:
                self._counts[spec["name"]] += 1
                self._dtypes.setdefault(spec["name"], spec["dtype"])
            self._seq = entry.seq + 1
        try:
            self.streams.resume(entries)
        except BaseException:
            self._journal.release()
            raise

    def completed_ids(self) -> set[str]:
        """Ids of examples already committed (by this run or an earlier, interrupted one)."""
        return set(self._completed)

    @property
    def finalized(self) -> bool:
        return self._finalized is not None

    # -- writing -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def example(self, example_id: str) -> Iterator[ExampleWriter]:
        """Collect one example's rows and arrays; commit them atomically when the block exits cleanly."""
        if self._finalized is not None:
            raise UsageError(f"{self.path}: dataset is finalized; no more examples can be added")
        if not isinstance(example_id, str) or not example_id:
            raise UsageError(f"example id must be a non-empty string, got {example_id!r}")
        if example_id in self._completed:
            raise UsageError(f"{self.path}: example {example_id!r} is already committed (see completed_ids())")
        ex = ExampleWriter(self, example_id)
        yield ex  # an exception (or a kill) here drops ex: nothing reaches the journal
        self._commit(ex)

    def _commit(self, ex: ExampleWriter) -> None:
        where = f"{self.path}: example {ex.example_id!r}"
        validate_example(self.specs, ex.rows, where)
        local = {name: 0 for name in self.arrays}
        for spec in ex.array_specs:
            local[spec["name"]] += 1
        for table, rows in ex.rows.items():
            spec = self.tables[table]
            for column, array in spec.array_columns().items():
                limit = self._counts.get(array, 0) + local.get(array, 0)
                for i, row in enumerate(rows):
                    ref = row.get(column)
                    if ref is None:
                        continue
                    if array not in self.arrays:
                        raise SchemaError(f"{where}: {table}[{i}].{column} refers to array {array!r}, which "
                                          "no kind of this dataset defines (add its kind to extra_kinds)")
                    if ref >= limit:
                        raise SchemaError(f"{where}: {table}[{i}].{column}={ref} but array {array!r} "
                                          f"has only {limit} items")
            keys = [tuple(row.get(k) for k in spec.key) for row in rows]
            if len(set(keys)) != len(keys):
                raise SchemaError(f"{where}: duplicate {table} key {list(spec.key)}")
        header = {"example_id": ex.example_id, "tables": ex.rows, "arrays": ex.array_specs}
        self._background.commit(self._seq, header, ex.raw_arrays)
        self._seq += 1
        self._completed.add(ex.example_id)
        for spec in ex.array_specs:
            self._counts[spec["name"]] += 1
            self._dtypes.setdefault(spec["name"], spec["dtype"])

    def finalize(self) -> dict[str, Any]:
        """Build tables, arrays, card and manifest from the journal; returns the manifest.

        Output is built in a staging directory and moved into place with manifest.json last, so a
        dataset is either complete or (no manifest) still resumable. Calling it again is a no-op.
        """
        if self._finalized is None:
            self._background.drain()
            self._finalized = build.finalize(self, self._journal.entries())
            self._journal.remove()
        return self._finalized

    def close(self) -> None:
        """Write the examples still queued, then release the journal lock without finalizing (the write
        can be resumed later)."""
        try:
            self._background.drain()
        finally:
            self.streams.close()
            self._journal.release()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BackgroundCommits:
    """Writes committed examples to the journal and their arrays to the shard streams on one
    background thread, in commit order, so the array bytes go to disk while the model computes the
    next example.

    The queue is bounded (``depth`` examples), so memory stays bounded and a slow disk slows the
    generator down rather than piling up tensors. A process killed with examples still queued loses
    those (their journal files never appear); resuming recomputes them, and since the journal decides
    the dataset's bytes, the result is the same. An error on the thread is raised by the next call.
    """

    def __init__(self, journal: Journal, streams: ArrayStreams, depth: int = 2) -> None:
        self._journal, self._streams = journal, streams
        self._worker = BackgroundWorker(self._write, depth, "latentbench-journal")

    def _write(self, item: tuple[int, dict[str, Any], list[np.ndarray]]) -> None:
        seq, header, arrays = item
        self._journal.commit(seq, *self._streams.stage(header, arrays))

    def commit(self, seq: int, header: dict[str, Any], arrays: list[np.ndarray]) -> None:
        self._worker.put((seq, header, arrays))

    def drain(self) -> None:
        """Wait until every queued example is in the journal."""
        self._worker.drain()


class ExampleWriter:
    """One example in flight; obtained from :meth:`DatasetWriter.example`."""

    def __init__(self, writer: DatasetWriter, example_id: str) -> None:
        self._w = writer
        self.example_id = example_id
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.array_specs: list[dict[str, Any]] = []
        self.raw_arrays: list[np.ndarray] = []

    @property
    def array_names(self) -> set[str]:
        """Arrays this dataset's kinds define (e.g. "kv" only when kv-shard is among them)."""
        return set(self._w.arrays)

    @property
    def table_names(self) -> set[str]:
        return set(self._w.tables)

    def add_array(self, name: str, tensor: Any, *, owner: str | None = None) -> int:
        """Stage a tensor in the ragged array ``name``; returns its global index (for ``*_ref`` columns).

        For arrays with an index table (kv-shard's ``kv`` -> ``kv_segments``) the row describing the
        tensor is added here, with ``owner`` as its owner reference.
        """
        spec = self._w.arrays.get(name)
        if spec is None:
            raise UsageError(f"array {name!r} is not defined by kinds "
                             f"{[s.kind for s in self._w.specs]} (arrays: {sorted(self._w.arrays)})")
        raw, dtype = to_storage(tensor)
        if dtype not in spec.dtypes:
            raise UsageError(f"array {name!r} takes {', '.join(spec.dtypes)}, got {dtype}")
        first = self._w._dtypes.get(name) or next(
            (s["dtype"] for s in self.array_specs if s["name"] == name), dtype)
        if dtype != first:
            raise UsageError(f"array {name!r} holds {first}; got {dtype} (one dtype per array)")
        if raw.ndim != spec.ndim:
            raise UsageError(f"array {name!r} items are {spec.ndim}-d {list(spec.axes)}, got shape "
                             f"{list(raw.shape)}")
        index = self._w._counts[name] + sum(s["name"] == name for s in self.array_specs)
        self.array_specs.append({"name": name, "dtype": dtype, "storage_dtype": raw.dtype.name,
                                 "shape": list(raw.shape)})
        self.raw_arrays.append(raw)
        if spec.index_table:
            ref_col = next(c for c, a in self._w.tables[spec.index_table].array_columns().items() if a == name)
            self.add_rows(spec.index_table, [{ref_col: index, "owner": owner, "dtype": dtype,
                                              "shape": list(raw.shape), "nbytes": int(raw.nbytes)}])
        return index

    def add_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Append rows to ``table``; ``example_id`` is filled in. Checked against the schema on commit."""
        if table not in self._w.tables:
            raise UsageError(f"table {table!r} is not defined by kinds {[s.kind for s in self._w.specs]} "
                             f"(tables: {sorted(self._w.tables)})")
        if isinstance(rows, dict):
            raise UsageError(f"add_rows({table!r}, ...) takes a list of rows, got one dict")
        out = self.rows.setdefault(table, [])
        for row in rows:
            row = to_builtin(dict(row))
            if row.setdefault("example_id", self.example_id) != self.example_id:
                raise SchemaError(f"{table} row has example_id {row['example_id']!r} inside example "
                                  f"{self.example_id!r}")
            out.append(row)
