"""Every dataset file is checked against manifest.json (size, then sha256) before its bytes are used.

Readers call :func:`verify_file` before parsing a table file, and read arrays through
:class:`VerifiedStore`, which checks each Zarr file on first access; a bad file is a
``DatasetIntegrityError`` naming it, never a reader panic or silently different values. Hashes are
remembered per process (``provenance.sha256_file_cached``), so repeated reads stay cheap.
Imports zarr: import this module lazily (``latentbench --help`` must stay light).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zarr.storage import WrapperStore

from latentbench.errors import DatasetIntegrityError
from latentbench.provenance import sha256_file_cached
from latentbench.store.build import ARRAYS

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
    when the file is really absent).
    """

    def __init__(self, store: Any, root: Path, files: dict[str, Any]) -> None:
        super().__init__(store)
        self._root, self._files = root, files

    def _with_store(self, store: Any) -> VerifiedStore:  # zarr re-wraps for with_read_only()
        return type(self)(store, self._root, self._files)

    def _check(self, key: str) -> None:
        rel = f"{ARRAYS}/{key}"
        if rel in self._files or (self._root / rel).exists():
            verify_file(self._root, rel, self._files)

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        self._check(key)
        return await self._store.get(key, prototype, byte_range)

    async def get_partial_values(self, prototype: Any, key_ranges: Iterable[tuple[str, Any]]) -> list[Any]:
        key_ranges = list(key_ranges)
        for key, _ in key_ranges:
            self._check(key)
        return await self._store.get_partial_values(prototype, key_ranges)
