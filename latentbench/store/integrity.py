"""Every dataset file is checked against manifest.json (size, then sha256) before its bytes are used.

Readers call :func:`verify_file` before parsing a table file, and read arrays through
:class:`VerifiedStore`, which checks each Zarr file on first access; a bad file is a
``DatasetIntegrityError`` naming it, never a reader panic or silently different values. Hashes are
remembered per process (``provenance.sha256_file_cached``), so repeated reads stay cheap.
Imports zarr: import this module lazily (``latentbench --help`` must stay light).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zarr.storage import WrapperStore

from latentbench.errors import DatasetIntegrityError
from latentbench.provenance import sha256_file_cached
from latentbench.store.manifest import ARRAYS

# What the Hub or huggingface_hub add to a downloaded repo; not part of the dataset.
HUB_EXTRAS = (".gitattributes", ".cache/")


def file_problem(root: Path, rel: str, entry: dict[str, Any] | None, *, hash_it: bool = True) -> str | None:
    """The one-line problem of file ``rel`` against its manifest ``entry``, or None if it matches
    (``hash_it=False``: presence and size only)."""
    path = root / rel
    if entry is None:
        return f"{path}: not listed in manifest.json"
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"{path}: missing (listed in manifest.json)"
    if size != entry["bytes"]:
        return f"{path}: size {size} bytes, manifest.json says {entry['bytes']} (truncated or modified)"
    if hash_it and sha256_file_cached(path) != entry["sha256"]:
        return f"{path}: sha256 mismatch (modified since manifest.json was written)"
    return None


def verify_file(root: Path, rel: str, files: dict[str, Any]) -> Path:
    """``root/rel`` once it matches manifest.json's ``files[rel]``; DatasetIntegrityError otherwise."""
    problem = file_problem(root, rel, files.get(rel))
    if problem:
        raise DatasetIntegrityError(problem)
    return root / rel


class VerifiedStore(WrapperStore):
    """A read-only zarr store that checks each file of ``<root>/arrays.zarr`` before zarr decodes it.

    A key the manifest lists must exist and match; a key it does not list must not exist on disk
    (zarr leaves all-fill chunks unwritten and reads them as the fill value, which is right only
    when the file is really absent). Files under a ``partial`` prefix (the shards of sharded data
    arrays, read one inner chunk at a time) are checked for presence and size only: hashing a whole
    shard to read one node would read all its neighbours; the bytes actually read are checked by the
    crc32c that ends every inner chunk and the shard index (zarr raises on a mismatch, which the
    reader reports as this file's integrity error). ``verify``/``validate`` hash them whole.
    """

    def __init__(self, store: Any, root: Path, files: dict[str, Any], partial: Iterable[str] = ()) -> None:
        super().__init__(store)
        self._root, self._files, self._partial = root, files, tuple(partial)

    def _with_store(self, store: Any) -> VerifiedStore:  # zarr re-wraps for with_read_only()
        return type(self)(store, self._root, self._files, self._partial)

    def _check(self, key: str) -> None:
        rel = f"{ARRAYS}/{key}"
        if rel in self._files or (self._root / rel).exists():
            if rel.startswith(self._partial):  # a shard: read in parts, each checked by its crc32c
                problem = file_problem(self._root, rel, self._files.get(rel), hash_it=False)
                if problem:
                    raise DatasetIntegrityError(problem)
            else:
                verify_file(self._root, rel, self._files)

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        self._check(key)
        return await self._store.get(key, prototype, byte_range)

    async def get_partial_values(self, prototype: Any, key_ranges: Iterable[tuple[str, Any]]) -> list[Any]:
        key_ranges = list(key_ranges)
        for key, _ in key_ranges:
            self._check(key)
        return await self._store.get_partial_values(prototype, key_ranges)


class HashingStore(WrapperStore):
    """A writable zarr store that records the sha256 and size of every value it writes, as
    ``{"<prefix>/<key>": {"sha256", "bytes"}}`` in :attr:`written` (for manifest.json, without
    reading the files back). A key written twice keeps its last value, as the file does."""

    def __init__(self, store: Any, prefix: str) -> None:
        super().__init__(store)
        self._prefix = prefix
        self.written: dict[str, dict[str, Any]] = {}

    def _with_store(self, store: Any) -> HashingStore:
        out = type(self)(store, self._prefix)
        out.written = self.written
        return out

    async def set(self, key: str, value: Any) -> None:
        raw = value.as_numpy_array()  # a uint8 view: hashed without a copy
        self.written[f"{self._prefix}/{key}"] = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": int(raw.nbytes)}
        await self._store.set(key, value)
