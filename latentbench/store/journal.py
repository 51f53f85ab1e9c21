"""Durable staging of examples while a dataset is being written: ``<dataset>/.journal/``.

Each committed example is one file ``<seq>.lbj`` (magic, header length, JSON header with the rows
and array descriptors, then the bytes of the arrays' tails: the array data itself streams straight
into the shard files under ``arrays/``, see streams.py). It is written under a temporary name, fsynced,
and atomically renamed: the rename is the commit, so a process killed at any instant leaves either
the whole example or nothing (stray temporary files are deleted on the next open). ``meta.json``
holds the writer's arguments and the first run's ``created`` time, so a resumed run rebuilds a
byte-identical dataset.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentbench.errors import DatasetIntegrityError, UsageError

MAGIC = b"LBJ1"
_HEADER = struct.Struct("<4sQ")
_SUFFIX = ".lbj"


@dataclass(frozen=True)
class Entry:
    seq: int
    path: Path
    header: dict[str, Any]
    data_start: int

    @property
    def example_id(self) -> str:
        return self.header["example_id"]

    def tail(self, name: str, storage_dtype: str) -> np.ndarray:
        """Array ``name``'s tail: this example's elements after the last whole inner chunk (streams.py)."""
        record = self.header["streams"][name]
        dtype, count = np.dtype(storage_dtype), record["tail_elements"]
        start = self.data_start + record["tail_offset"]
        if start + count * dtype.itemsize > self.path.stat().st_size:
            raise DatasetIntegrityError(f"{self.path}: journal entry is truncated")
        with open(self.path, "rb") as f:
            f.seek(start)
            return np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class Journal:
    def __init__(self, root: Path, durable: bool = True) -> None:
        self.root = root
        self.durable = durable  # fsync each entry (power loss); the atomic rename alone survives process kills
        self._lock_fd: int | None = None

    @property
    def meta_path(self) -> Path:
        return self.root / "meta.json"

    def exists(self) -> bool:
        return self.meta_path.is_file()

    def open(self, meta: dict[str, Any], compare: list[str]) -> dict[str, Any]:
        """Create the journal with ``meta``, or reopen it checking ``compare`` keys match; returns stored meta."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            if not self.exists():
                atomic_write(self.meta_path, json.dumps(meta, sort_keys=True, indent=1).encode())
            # Always use what is on disk (key order included): first and resumed runs must agree byte for byte.
            stored = json.loads(self.meta_path.read_text())
            differ = [k for k in compare if stored.get(k) != meta.get(k)]
            if differ:
                raise UsageError(
                    f"{self.root.parent}: an unfinished write with different {', '.join(differ)} is in "
                    f"progress; rerun with the same arguments or delete {self.root.parent}"
                )
        except BaseException:
            self.release()
            raise
        for stray in self.root.glob(".tmp-*"):  # examples killed mid-write: never committed
            stray.unlink()
        return stored

    def _lock(self) -> None:
        # flock dies with the process, so a SIGKILLed writer never leaves a stale lock.
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(f"{self.root.parent}: another writer is writing this dataset") from None
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def entries(self) -> list[Entry]:
        out = []
        for path in sorted(self.root.glob(f"*{_SUFFIX}")):
            out.append(Entry(int(path.stem), path, *read_header(path)))
        for i, entry in enumerate(out):
            if entry.seq != i:
                raise DatasetIntegrityError(f"{entry.path}: journal entry {i} is missing")
        return out

    def commit(self, seq: int, header: dict[str, Any], blobs: list[Any]) -> Entry:
        """Durably write one example (its header, then ``blobs``); visible to :meth:`entries` only once
        complete."""
        head = json.dumps(header, sort_keys=True).encode()
        path = self.root / f"{seq:08d}{_SUFFIX}"
        tmp = self.root / f".tmp-{seq:08d}-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(_HEADER.pack(MAGIC, len(head)))
            f.write(head)
            for blob in blobs:
                f.write(blob)
            f.flush()
            if self.durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)  # the commit point
        if self.durable:
            fsync_dir(self.root)
        return Entry(seq, path, header, _HEADER.size + len(head))

    def remove(self) -> None:
        self.release()
        shutil.rmtree(self.root, ignore_errors=True)


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """(header, offset where the array bytes start)."""
    with open(path, "rb") as f:
        magic, n = _HEADER.unpack(f.read(_HEADER.size))
        if magic != MAGIC:
            raise DatasetIntegrityError(f"{path}: not a latentbench journal entry")
        return json.loads(f.read(n)), _HEADER.size + n
