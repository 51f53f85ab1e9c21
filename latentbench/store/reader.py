"""Reading a dataset: tables as polars frames or ``datasets.Dataset``, tensors lazily from Zarr.

Every file is checked against manifest.json (size and sha256) the first time this process reads it
(``store.integrity``): a corrupt dataset raises DatasetIntegrityError naming the file, never returns
different values.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentbench.errors import DataNotFoundError, DatasetIntegrityError, SchemaError, UsageError
from latentbench.store.arrays import RaggedArray
from latentbench.store.manifest import ARRAYS, read_manifest
from latentbench.store.parquet import read_parquet
from latentbench.store.schema import KindSpec, TableSpec, check_frame, load_kind

if TYPE_CHECKING:
    import datasets
    import polars as pl

log = logging.getLogger(__name__)


class Dataset:
    """A dataset directory. Opening reads and checks only manifest.json; data is read on demand."""

    def __init__(self, path: str | Path, *, array_store: Any = None) -> None:
        self.path = Path(path)
        self.hub_id: str | None = None  # set by open_dataset("owner/name[@rev]"): the repo ...
        self.revision: str | None = None  # ... and the commit whose files were read
        self.manifest: dict[str, Any] = read_manifest(self.path)
        self.specs: list[KindSpec] = [load_kind(k, v) for k, v in self.manifest["kinds"].items()]
        self._table_specs: dict[str, TableSpec] = {n: t for s in self.specs for n, t in s.tables.items()}
        self._array_store = array_store
        self._group: Any = None
        self._arrays: dict[str, RaggedArray] = {}

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def tables(self) -> list[str]:
        return list(self.manifest["tables"])

    @property
    def arrays(self) -> list[str]:
        return list(self.manifest["arrays"])

    def __repr__(self) -> str:
        counts = self.manifest["counts"]
        hub = f", hub={self.hub_id + '@' + self.revision!r}" if self.hub_id and self.revision else ""
        return (f"Dataset({str(self.path)!r}{hub}, kind={self.kind!r}, version={self.version!r}, "
                f"examples={counts['examples']}, tables={counts['tables']}, arrays={counts['arrays']})")

    def table_spec(self, name: str) -> TableSpec:
        """Schema of a table: columns (with descriptions and units), key, array references."""
        if name not in self._table_specs:
            raise UsageError(f"{self.path}: no table {name!r} (tables: {', '.join(self.tables)})")
        return self._table_specs[name]

    def table(self, name: str) -> pl.DataFrame:
        """The whole table, rows in key order, checked against its schema (every row, vectorised)."""
        import polars as pl

        if name not in self.manifest["tables"]:
            raise UsageError(f"{self.path}: no table {name!r} (tables: {', '.join(self.tables)})")
        from latentbench.store.integrity import verify_file

        meta = self.manifest["tables"][name]
        frames = [read_parquet(verify_file(self.path, rel, self.manifest["files"])) for rel in meta["files"]]
        spec = self._table_specs[name]
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=spec.polars_schema())
        where = self.path / meta["files"][0] if meta["files"] else self.path / "tables" / name
        problems = check_frame(spec, frame)
        if problems:
            raise SchemaError(f"{where}: {problems[0]}")
        if len(frame) != meta["rows"]:
            raise DatasetIntegrityError(f"{where}: {len(frame)} rows, manifest.json says {meta['rows']}")
        return frame

    def to_hf(self, name: str) -> datasets.Dataset:
        """The table as an in-memory ``datasets.Dataset`` (same rows and order as :meth:`table`)."""
        import datasets

        return datasets.Dataset(self.table(name).to_arrow())

    def array_len(self, name: str) -> int:
        return len(self._array(name))

    def array(self, name: str, index: int, *, torch: bool = False) -> Any:
        """Tensor ``index`` of array ``name``, reading only its chunks.

        numpy array by default (torch tensor with ``torch=True``); bfloat16 arrays always come back as
        torch tensors since numpy has no bfloat16.
        """
        return self._array(name).get(index, as_torch=torch)

    def _array(self, name: str) -> RaggedArray:
        if name not in self._arrays:
            if name not in self.manifest["arrays"]:
                raise UsageError(f"{self.path}: no array {name!r} (arrays: {', '.join(self.arrays) or 'none'})")
            import zarr

            from latentbench.store.integrity import VerifiedStore

            store = self._array_store if self._array_store is not None else zarr.storage.LocalStore(
                self.path / ARRAYS, read_only=True)
            partial = [f"{ARRAYS}/{a}/data/c/" for a, m in self.manifest["arrays"].items() if "shard_elements" in m]
            store = VerifiedStore(store, self.path, self.manifest["files"], partial)
            try:
                if self._group is None:
                    self._group = zarr.open_group(store, mode="r")
                self._arrays[name] = RaggedArray(self._group, name, where=self.path / ARRAYS / name,
                                                 local=self._local_shards(name))
            except (KeyError, FileNotFoundError, zarr.errors.BaseZarrError) as exc:
                raise DatasetIntegrityError(f"{self.path / ARRAYS / name}: missing or unreadable Zarr array "
                                            f"({type(exc).__name__})") from None
        return self._arrays[name]

    def _local_shards(self, name: str) -> Any:
        """Synchronous reads of ``name``'s sharded data on local disk (None: remote, or another layout);
        each shard file is checked for presence and size against manifest.json on first use, as
        ``VerifiedStore`` does, and every byte read by its crc32c."""
        if self._array_store is not None or "shard_elements" not in self.manifest["arrays"][name]:
            return None
        from latentbench.store.integrity import file_problem, verify_file
        from latentbench.store.shards import LocalShards

        verify_file(self.path, f"{ARRAYS}/{name}/data/zarr.json", self.manifest["files"])  # read before zarr does

        def check(shard: int) -> None:
            rel = f"{ARRAYS}/{name}/data/c/{shard}"
            problem = file_problem(self.path, rel, self.manifest["files"].get(rel), hash_it=False)
            if problem:
                raise DatasetIntegrityError(problem)

        return LocalShards.open(self.path / ARRAYS / name / "data", check)

    def verify(self, *, tables_only: bool = False) -> list[str]:
        """Files against manifest.json: every file present at its size, nothing unlisted, and the sha256 of
        every file (``tables_only``: of the Parquet files only). One line per problem, empty if all match;
        the Hub's ``.gitattributes`` and huggingface_hub's ``.cache/`` are ignored."""
        from latentbench.store.integrity import HUB_EXTRAS
        from latentbench.store.validate import check_files

        tables = {rel for t in self.manifest["tables"].values() for rel in t["files"]}
        return check_files(self.path, self.manifest, hash_only=tables if tables_only else None, ignore=HUB_EXTRAS)

    def validate(self) -> list[str]:
        """Full check (schemas, hashes, references); one line per problem, empty if valid."""
        from latentbench.store.validate import validate_dataset

        return validate_dataset(self.path)


def open_dataset(spec: str | Path, *, array_store: Any = None) -> Dataset:
    """Open a dataset directory, or a Hub dataset ``owner/name[@revision]`` (downloaded to the cache).

    A Hub id's branch or tag (``main`` if none) is resolved to a commit on each call (offline: the
    commit it resolved to last); ``ds.hub_id`` and ``ds.revision`` say which repo and commit were read,
    and an unpinned id logs it (a warning naming the ``owner/name@<commit>`` that reads it again).

    ``array_store``: read arrays through this zarr store instead of ``<dir>/arrays.zarr`` (e.g. an
    instrumented or caching wrapper of it); each key is still checked against the file on disk under
    ``<dir>/arrays.zarr`` first.
    """
    path = Path(spec).expanduser()
    if path.exists():
        return Dataset(path, array_store=array_store)
    from latentbench.store import hub

    parsed = hub.parse_hub_spec(str(spec))
    if parsed is None:
        raise DataNotFoundError(f"{spec}: no such dataset directory (nor a Hub id 'owner/name[@revision]')")
    try:
        copy = hub.cached_dataset(*parsed)
    except (DataNotFoundError, hub.HubError) as exc:  # could also be a mistyped local path: say both
        raise DataNotFoundError(f"{spec}: no such dataset directory, and as a Hub id: {exc}") from None
    ds = Dataset(copy.path, array_store=array_store)
    ds.hub_id, ds.revision = copy.repo_id, copy.commit
    if parsed[1] is None:  # unpinned: what was read depends on when; say so
        log.warning("%s: read %s at commit %s; open %s@%s to read exactly this again",
                    spec, copy.ref, copy.commit, copy.repo_id, copy.commit)
    else:
        log.info("%s: read commit %s", spec, copy.commit)
    return ds
