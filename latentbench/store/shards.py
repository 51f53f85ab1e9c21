"""Synchronous reads of element ranges from a ragged array's sharded ``data`` on local disk.

zarr-python 3 serves every read through its event-loop thread; for one node's KV (a few inner chunks)
that hop costs ~2 ms, 7× a safetensors read (bench/store). The layout is zarr's own sharding codec
(spec: zarr-specs ``codecs/sharding-indexed``), so for the layout our writer makes (1-D, index at the
end of each shard as little-endian uint64 (offset, length) pairs plus its crc32c; inner chunks as
little-endian bytes, optionally zstd or blosc, then a crc32c) this module reads the index and the
inner chunks with ``os.pread`` and decodes them with the same libraries zarr uses (numcodecs,
google-crc32c). Anything else (remote stores, other codecs) goes through zarr as before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from latentbench.errors import DatasetIntegrityError

EMPTY = 2**64 - 1  # an inner chunk never written: all fill value
_CRC = {"name": "crc32c"}
_LITTLE = {"name": "bytes", "configuration": {"endian": "little"}}


def _decompressor(codecs: list[dict[str, Any]]) -> Any:
    """The inner chunks' decoder between bytes and crc32c; False when the chain is not one we read."""
    if len(codecs) < 2 or codecs[0] != _LITTLE or codecs[-1] != _CRC or len(codecs) > 3:
        return False
    if len(codecs) == 2:
        return None
    name = codecs[1]["name"]
    if name == "zstd":
        from numcodecs import Zstd

        return Zstd().decode
    if name == "blosc":
        from numcodecs import blosc

        return blosc.decompress
    return False


class LocalShards:
    """Element ranges of one sharded 1-D zarr array (``folder`` holds its ``zarr.json`` and ``c/``)."""

    def __init__(self, folder: Path, shard: int, inner: int, size: int, dtype: np.dtype, decompress: Any,
                 check_file: Any) -> None:
        self.folder, self.shard, self.inner, self.size, self.dtype = folder, shard, inner, size, dtype
        self._decompress, self._check_file = decompress, check_file
        self._per_shard = shard // inner

    @classmethod
    def open(cls, folder: Path, check_file: Any) -> LocalShards | None:
        """The reader for ``folder``'s array, or None when its layout is not the one described above.
        ``check_file(shard)`` raises on a shard file that does not match the manifest (called on each read)."""
        try:
            meta = json.loads((folder / "zarr.json").read_text())
            [codec] = meta["codecs"]
            config = codec["configuration"]
            ok = (codec["name"] == "sharding_indexed" and len(meta["shape"]) == 1
                  and config.get("index_location", "end") == "end" and config["index_codecs"] == [_LITTLE, _CRC]
                  and meta["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "/"}}
                  and meta["fill_value"] in (0, 0.0))
            decompress = _decompressor(config["codecs"]) if ok else False
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if decompress is False:
            return None
        shard, inner = meta["chunk_grid"]["configuration"]["chunk_shape"][0], config["chunk_shape"][0]
        if shard % inner:
            return None
        return cls(folder, shard, inner, meta["shape"][0], np.dtype(meta["data_type"]).newbyteorder("<"),
                   decompress, check_file)

    def _pread(self, fd: int, shard: int, offset: int, length: int) -> bytes:
        data = os.pread(fd, length, offset)
        if len(data) != length:
            raise DatasetIntegrityError(f"{self.folder}/c/{shard}: unreadable (shard shorter than its index says)")
        return data

    @staticmethod
    def _checked(raw: bytes, where: str) -> bytes:
        import google_crc32c

        body = raw[:-4]
        if google_crc32c.value(body) != int.from_bytes(raw[-4:], "little"):
            raise DatasetIntegrityError(f"{where}: crc32c mismatch (modified since manifest.json was written)")
        return body

    def _index(self, fd: int, shard: int) -> np.ndarray:
        """[inner chunks per shard, 2] (offset, length) of shard ``shard``, read and checked on every call
        (as zarr does: a file changed since the last read is caught, never half-used)."""
        size = 16 * self._per_shard + 4
        end = os.fstat(fd).st_size
        if end < size:
            raise DatasetIntegrityError(f"{self.folder}/c/{shard}: unreadable (shorter than its shard index)")
        body = self._checked(self._pread(fd, shard, end - size, size), f"{self.folder}/c/{shard}")
        return np.frombuffer(body, dtype="<u8").reshape(self._per_shard, 2)

    def _chunk(self, fd: int, chunk: int, index: np.ndarray) -> np.ndarray:
        shard, local = divmod(chunk, self._per_shard)
        offset, length = (int(x) for x in index[local])
        if offset == EMPTY and length == EMPTY:
            return np.zeros(self.inner, dtype=self.dtype)
        body = self._checked(self._pread(fd, shard, offset, length), f"{self.folder}/c/{shard}")
        raw = self._decompress(body) if self._decompress is not None else body
        values = np.frombuffer(raw, dtype=self.dtype)
        if values.size != self.inner:
            raise DatasetIntegrityError(f"{self.folder}/c/{shard}: unreadable (inner chunk of {values.size} "
                                        f"elements, expected {self.inner})")
        return values

    def read(self, start: int, stop: int) -> np.ndarray:
        """Elements [start, stop) as a new array of the storage dtype."""
        if not 0 <= start <= stop <= self.size:
            raise IndexError(f"elements [{start}, {stop}) outside an array of {self.size}")
        out = np.empty(stop - start, dtype=self.dtype)
        chunks = range(start // self.inner, -(-stop // self.inner))
        for shard in sorted({c // self._per_shard for c in chunks}):
            self._check_file(shard)  # present at its manifest size, on every read (as VerifiedStore checks)
            fd = os.open(self.folder / "c" / str(shard), os.O_RDONLY)
            try:
                index = self._index(fd, shard)
                for chunk in (c for c in chunks if c // self._per_shard == shard):
                    lo, hi = max(start, chunk * self.inner), min(stop, (chunk + 1) * self.inner)
                    values = self._chunk(fd, chunk, index)
                    out[lo - start:hi - start] = values[lo - chunk * self.inner:hi - chunk * self.inner]
            finally:
                os.close(fd)
        return out
