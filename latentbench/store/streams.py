"""Array bytes written once: while examples are committed, each ragged array's flat ``data`` streams
into its final zarr shard files inside the journal (``.journal/arrays/<name>/c/<shard>``); finalize
only appends each shard's index and links the files into the dataset.

A shard file is zarr's sharding codec with the index at the end (zarr-specs ``codecs/sharding-indexed``;
the layout ``store/shards.py`` reads): the inner chunks in order, each its encoded bytes followed by
their crc32c, then per inner chunk of the shard an (offset, length) pair of little-endian uint64
(2^64-1 twice for a chunk past the end of the array) and the index's own crc32c. Only whole inner
chunks go to a shard file. The elements of the last, partial chunk travel in the journal entry of the
example that wrote them (its *tail*), so a resumed run rebuilds the partial chunk from the entries and
cuts each shard file back to its last committed chunk: the files end byte-identical to those of an
uninterrupted run. The sha256 of each shard file is kept up to date as it grows, so finalize need not
read the shards back to write the manifest.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from latentbench.errors import DatasetIntegrityError, UsageError
from latentbench.store.arrays import chunk_encoder, shard_elements
from latentbench.store.background import BackgroundWorker
from latentbench.store.shards import EMPTY


def _crc(data: Any) -> bytes:
    import google_crc32c

    return google_crc32c.value(data).to_bytes(4, "little")


def _bytes(a: np.ndarray) -> np.ndarray:
    """A flat uint8 view (google_crc32c, hashlib and os.writev take it without a copy)."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


class BackgroundHashes:
    """sha256 of each shard file's bytes, updated on a thread of its own: hashing is the slowest step
    of a write (about 1.4 GB/s on this project's CPUs, against about 4 GB/s for the write itself), and
    hashlib releases the GIL, so it runs beside the writing. At most ``depth`` writes wait (the parts
    are views of the caller's arrays: memory stays bounded)."""

    def __init__(self, depth: int = 64) -> None:
        self.hashes: dict[int, Any] = {}
        self._worker = BackgroundWorker(self._hash, depth, "latentbench-sha256")

    def _hash(self, item: tuple[int, list[Any]]) -> None:
        h = self.hashes.setdefault(item[0], hashlib.sha256())
        for part in item[1]:
            h.update(part)

    def update(self, shard: int, parts: list[Any]) -> None:
        self._worker.put((shard, parts))

    def drain(self) -> None:
        """Wait until every queued write is hashed."""
        self._worker.drain()


class ShardStream:
    """The flat ``data`` of one ragged array, growing one example at a time (see the module docstring).

    ``chunks[k]`` is (offset, length) of inner chunk k in shard file ``k // per_shard``; ``pending``
    holds the elements after the last whole chunk, as a list of (position, array) pieces.
    """

    def __init__(self, folder: Path, storage_dtype: str, *, codec: str, chunk_elements: int,
                 shard_bytes: int, durable: bool) -> None:
        self.folder, self.dtype, self.durable = folder, np.dtype(storage_dtype), durable
        self.chunk = chunk_elements
        self.per_shard = shard_elements(chunk_elements, shard_bytes, self.dtype.itemsize) // chunk_elements
        self._encode: Callable[[bytes], bytes] | None = chunk_encoder(codec, self.dtype.itemsize)
        self.chunks: list[tuple[int, int]] = []
        self.pending: list[tuple[int, np.ndarray]] = []
        self.elements = 0
        self._hashes = BackgroundHashes()  # sha256 of each shard file's committed bytes
        self._fd: int | None = None
        self._fd_shard = -1

    # -- paths and files ---------------------------------------------------------------------------
    def path(self, shard: int) -> Path:
        return self.folder / "c" / str(shard)

    def _size(self, shard: int) -> int:
        """Committed bytes of shard file ``shard``: the end of its last whole chunk."""
        last = min(len(self.chunks), (shard + 1) * self.per_shard) - 1
        return 0 if last < shard * self.per_shard else sum(self.chunks[last])

    def _open(self, shard: int) -> int:
        if self._fd_shard != shard:
            self.close()
            self.path(shard).parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path(shard), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._fd_shard = shard
        assert self._fd is not None
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            if self.durable:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd, self._fd_shard = None, -1
        self._hashes.drain()

    def _write(self, shard: int, parts: list[Any]) -> int:
        fd = self._open(shard)
        n = sum(len(p) for p in parts)
        if os.writev(fd, parts) != n:
            raise OSError(f"{self.path(shard)}: short write (disk full?)")
        return n

    # -- appending ---------------------------------------------------------------------------------
    def _flush_chunk(self, pieces: list[np.ndarray], hashed: Callable[[int, list[Any]], None]) -> tuple[int, int]:
        """Write one whole inner chunk made of ``pieces`` and pass what was written to ``hashed``;
        returns its (offset, length)."""
        k = len(self.chunks)
        shard = k // self.per_shard
        offset = self._size(shard)
        if self._encode is None:  # uncompressed: the pieces as they are, crc32c computed across them
            import google_crc32c

            parts: list[Any] = [_bytes(p) for p in pieces]
            crc = 0
            for p in parts:
                crc = google_crc32c.extend(crc, p)
            parts.append(crc.to_bytes(4, "little"))
        else:
            body = self._encode(b"".join(_bytes(p) for p in pieces))
            parts = [body, _crc(body)]
        length = self._write(shard, parts)
        hashed(shard, parts)
        self.chunks.append((offset, length))
        return offset, length

    def append(self, raws: list[np.ndarray]) -> tuple[dict[str, Any], list[np.ndarray]]:
        """Stream one example's items (in order); returns its journal record and its tail's bytes."""
        start, new = self.elements, []
        for raw in raws:
            flat = raw.reshape(-1)
            done = 0
            while done < flat.size:
                have = sum(p.size for _, p in self.pending)
                n = min(self.chunk - have, flat.size - done)
                self.pending.append((self.elements, flat[done:done + n]))
                self.elements, done = self.elements + n, done + n
                if have + n == self.chunk:
                    new.append(self._flush_chunk([p for _, p in self.pending], self._hashes.update))
                    self.pending = []
        if new and self.durable:
            assert self._fd is not None
            os.fsync(self._fd)  # the shard's chunks are on disk before the entry that names them
        tail = [p for pos, p in self.pending if pos >= start]
        record = {"chunks": [list(c) for c in new], "tail_start": max(start, len(self.chunks) * self.chunk),
                  "tail_elements": sum(p.size for p in tail)}
        return record, [_bytes(p) for p in tail]

    # -- resuming ----------------------------------------------------------------------------------
    def resume(self, records: list[tuple[dict[str, Any], np.ndarray]]) -> None:
        """Rebuild the state from the journal's records (in commit order, each with its tail elements)
        and cut the shard files back to what those records committed."""
        for record, _ in records:
            self.chunks.extend((int(o), int(n)) for o, n in record["chunks"])
            self.elements = record["tail_start"] + record["tail_elements"]
        boundary = len(self.chunks) * self.chunk
        self.pending = [(r["tail_start"], t) for r, t in records if r["tail_start"] >= boundary and t.size]
        if sum(t.size for _, t in self.pending) != self.elements - boundary:
            raise DatasetIntegrityError(f"{self.folder}: journal records do not add up; delete the dataset "
                                        "directory and write it again")
        for shard in range(self._cut_back()):
            with open(self.path(shard), "rb") as f:
                self._hashes.hashes[shard] = hashlib.file_digest(f, "sha256")

    def _cut_back(self) -> int:
        """Cut each shard file back to its committed chunks and delete any file past them (bytes of
        examples that never committed, or of a finish that did not complete); returns the shard count."""
        shards = -(-len(self.chunks) // self.per_shard)
        for shard in range(shards):
            size, path = self._size(shard), self.path(shard)
            if not path.is_file() or path.stat().st_size < size:
                raise DatasetIntegrityError(f"{path}: shorter than the journal says (lost in a crash without "
                                            "durable writes?); delete the dataset directory and write it again")
            os.truncate(path, size)
        for stray in (self.folder / "c").glob("*") if (self.folder / "c").is_dir() else []:
            if not stray.name.isdigit() or int(stray.name) >= shards:
                stray.unlink()
        return shards

    # -- finishing ---------------------------------------------------------------------------------
    def finish(self, dest: Path, link: Callable[[Path, Path], None]) -> tuple[int, int, dict[int, dict[str, Any]]]:
        """Write the last (partial) chunk and every shard's index, and ``link`` each shard file to
        ``dest/c/<shard>``. Returns (inner chunk elements, shard elements, {shard: sha256 and bytes}).

        Repeatable: the journal's shard files are cut back to their committed chunks first. An array
        smaller than one inner chunk gets a single chunk of its own size (zarr stores an edge chunk at
        full size: a 408-element array would otherwise take a 2^16-element file)."""
        self.close()
        committed = list(self.chunks)
        pieces = [p for _, p in self.pending]
        try:
            self._cut_back()
            if not self.elements:
                return 1, 1, {}
            chunk = self.chunk if committed else self.elements
            self._hashes.drain()
            hashes = {s: h.copy() for s, h in self._hashes.hashes.items()}  # the committed state stays

            def hashed(shard: int, parts: list[Any]) -> None:
                for part in parts:
                    hashes.setdefault(shard, hashlib.sha256()).update(part)

            if pieces:
                if committed:  # zero-padded to a whole chunk, as zarr stores an edge chunk
                    pieces.append(np.zeros(chunk - sum(p.size for p in pieces), self.dtype))
                self._flush_chunk(pieces, hashed)
            n_chunks = len(self.chunks)
            shard_size = min(self.per_shard, n_chunks) * chunk
            per_shard = shard_size // chunk
            out = {}
            for shard in range(-(-n_chunks // per_shard)):
                index = np.full((per_shard, 2), EMPTY, dtype="<u8")
                mine = self.chunks[shard * per_shard:(shard + 1) * per_shard]
                index[:len(mine)] = mine
                body = index.tobytes()
                fd = os.open(self.path(shard), os.O_WRONLY | os.O_APPEND)
                try:
                    os.write(fd, body + _crc(body))
                    if self.durable:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                hashed(shard, [body + _crc(body)])
                target = dest / "c" / str(shard)
                target.parent.mkdir(parents=True, exist_ok=True)
                link(self.path(shard), target)
                out[shard] = {"sha256": hashes[shard].hexdigest(), "bytes": self.path(shard).stat().st_size}
            return chunk, shard_size, out
        finally:
            self.close()
            self.chunks = committed  # finish changes no state: it can run again (or appending go on)


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (no bytes copied; the journal keeps its own name, so a finalize killed halfway can
    be resumed), or a copy where the filesystem has no hard links."""
    try:
        os.link(src, dst)
    except OSError:
        import shutil

        shutil.copyfile(src, dst)


class ArrayStreams:
    """One :class:`ShardStream` per ragged array of a dataset being written, under ``folder``."""

    def __init__(self, folder: Path, *, codec: str, chunk_elements: int, shard_bytes: int, durable: bool) -> None:
        self.folder = folder
        self._kwargs = {"codec": codec, "chunk_elements": chunk_elements, "shard_bytes": shard_bytes,
                        "durable": durable}
        self.streams: dict[str, ShardStream] = {}

    def _stream(self, name: str, storage_dtype: str) -> ShardStream:
        if name not in self.streams:
            self.streams[name] = ShardStream(self.folder / name, storage_dtype, **self._kwargs)
        return self.streams[name]

    def stage(self, header: dict[str, Any], arrays: list[np.ndarray]) -> tuple[dict[str, Any], list[Any]]:
        """Stream one example's arrays; returns its journal header (with a ``streams`` record per
        array: the chunks it completed, where its tail starts) and the tails' bytes to store with it."""
        by_name: dict[str, list[np.ndarray]] = {}
        for spec, raw in zip(header["arrays"], arrays, strict=True):
            by_name.setdefault(spec["name"], []).append(raw)
        records, blobs, offset = {}, [], 0
        for name, raws in by_name.items():
            record, tail = self._stream(name, raws[0].dtype.name).append(raws)
            records[name] = {**record, "tail_offset": offset}
            blobs += tail
            offset += sum(len(b) for b in tail)
        return {**header, "streams": records}, blobs

    def resume(self, entries: list[Any]) -> None:
        """Rebuild every stream from the journal's entries (``journal.Entry``)."""
        records: dict[str, list[tuple[dict[str, Any], np.ndarray]]] = {}
        dtypes = {}
        for entry in entries:
            if entry.header["arrays"] and "streams" not in entry.header:
                raise UsageError(f"{entry.path}: journal of an unfinished write by an older latentbench (arrays "
                                 "inside the entries); finish it with that version or delete the dataset directory")
            for spec in entry.header["arrays"]:
                dtypes.setdefault(spec["name"], spec["storage_dtype"])
            for name, record in entry.header.get("streams", {}).items():
                records.setdefault(name, []).append((record, entry.tail(name, dtypes[name])))
        for stray in self.folder.glob("*") if self.folder.is_dir() else []:
            if stray.name not in records:  # an array whose first example never committed
                import shutil

                shutil.rmtree(stray)
        for name, recs in records.items():
            self._stream(name, dtypes[name]).resume(recs)

    def close(self) -> None:
        for stream in self.streams.values():
            stream.close()
