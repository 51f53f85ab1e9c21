"""Ragged tensor arrays in a Zarr v3 group: ``<name>/data`` (flat), ``<name>/offsets``, ``<name>/shapes``.

Item ``i`` is ``data[offsets[i]:offsets[i+1]].reshape(shapes[i])``. The flat array is chunked along
its only axis, which runs in example order, so reading one item touches only the chunks its range
overlaps plus one chunk of ``offsets`` and ``shapes``. bfloat16 has no numpy dtype: it is stored as
its raw 16 bits (uint16, bit-exact) and the real dtype is kept in the group's attributes.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from latentbench.errors import DatasetIntegrityError, UsageError

if TYPE_CHECKING:
    import zarr

CODECS = ("blosc-zstd-bitshuffle", "zstd")
# Picked by bench/store/run.py on real SmolLM2 KV caches (see bench/store/README.md).
DEFAULT_CODEC = "blosc-zstd-bitshuffle"
DEFAULT_CHUNK_ELEMENTS = 1 << 18  # 512 KiB of float16 per chunk
INDEX_CHUNK = 4096  # items per chunk of offsets/shapes

_STORAGE = {"bfloat16": "uint16"}


def storage_dtype(dtype: str) -> str:
    return _STORAGE.get(dtype, dtype)


def to_storage(tensor: Any) -> tuple[np.ndarray, str]:
    """numpy array or torch tensor -> (C-contiguous array in its storage dtype, real dtype name)."""
    if type(tensor).__module__.startswith("torch"):
        import torch

        t = tensor.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(np.uint16).copy(), "bfloat16"
        return t.numpy().copy(), str(t.dtype).removeprefix("torch.")
    if isinstance(tensor, np.ndarray):
        return np.ascontiguousarray(tensor), tensor.dtype.name
    raise UsageError(f"arrays must be numpy arrays or torch tensors, got {type(tensor).__name__}")


def from_storage(raw: np.ndarray, dtype: str, as_torch: bool = False) -> Any:
    """Inverse of :func:`to_storage`. bfloat16 always comes back as a torch tensor (numpy has none)."""
    if dtype == "bfloat16" or as_torch:
        import torch

        if dtype == "bfloat16":
            return torch.from_numpy(raw.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(raw)
    return raw


def codec_chain(codec: str, itemsize: int) -> list[Any]:
    import zarr.codecs as zc

    if codec == "zstd":
        return [zc.ZstdCodec(level=3)]
    if codec == "blosc-zstd-bitshuffle":
        return [zc.BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle", typesize=itemsize)]
    raise UsageError(f"unknown codec {codec!r} (choose from {', '.join(CODECS)})")


class RaggedWriter:
    """Streams items into a new ragged array, writing only whole chunks until :meth:`close`.

    Sizes are known up front (from the journal), so arrays are created at final shape and every write
    is chunk-aligned: no read-modify-write, and identical inputs give identical bytes.
    """

    def __init__(
        self,
        group: zarr.Group,
        name: str,
        *,
        dtype: str,
        ndim: int,
        items: int,
        elements: int,
        codec: str,
        chunk_elements: int,
        attributes: dict[str, Any],
    ) -> None:
        sdt = np.dtype(storage_dtype(dtype))
        sub = group.create_group(name, attributes={**attributes, "dtype": dtype, "storage_dtype": sdt.name})
        self._data = sub.create_array(
            "data", shape=(elements,), chunks=(chunk_elements,), dtype=sdt,
            compressors=codec_chain(codec, sdt.itemsize), dimension_names=["element"],
        )
        self._offsets = sub.create_array(
            "offsets", shape=(items + 1,), chunks=(INDEX_CHUNK,), dtype="int64",
            compressors=codec_chain("zstd", 8), dimension_names=["item"],
        )
        self._shapes = sub.create_array(
            "shapes", shape=(items, ndim), chunks=(INDEX_CHUNK, ndim), dtype="int64",
            compressors=codec_chain("zstd", 8), dimension_names=["item", "axis"],
        )
        self._sdt, self._ndim, self._chunk = sdt, ndim, chunk_elements
        self._offsets_buf = [0]
        self._shapes_buf: list[tuple[int, ...]] = []
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._written = 0

    def append(self, raw: np.ndarray) -> None:
        if raw.dtype != self._sdt or raw.ndim != self._ndim:
            raise DatasetIntegrityError(f"item {len(self._shapes_buf)} has {raw.dtype}/{raw.ndim}d, "
                                        f"array is {self._sdt}/{self._ndim}d")
        self._shapes_buf.append(raw.shape)
        self._offsets_buf.append(self._offsets_buf[-1] + raw.size)
        self._pending.append(raw.reshape(-1))
        self._pending_n += raw.size
        if self._pending_n >= self._chunk:
            self._flush(whole_chunks_only=True)

    def _flush(self, whole_chunks_only: bool) -> None:
        if not self._pending_n:
            return
        flat = np.concatenate(self._pending)
        n = (len(flat) // self._chunk) * self._chunk if whole_chunks_only else len(flat)
        if n:
            self._data[self._written : self._written + n] = flat[:n]
            self._written += n
        rest = flat[n:]
        self._pending, self._pending_n = ([rest] if len(rest) else []), len(rest)

    def close(self) -> None:
        self._flush(whole_chunks_only=False)
        if self._written != self._data.shape[0] or len(self._shapes_buf) != self._shapes.shape[0]:
            raise DatasetIntegrityError("ragged array sizes differ from the journal's")
        self._offsets[:] = np.asarray(self._offsets_buf, dtype=np.int64)
        if self._shapes_buf:
            self._shapes[:] = np.asarray(self._shapes_buf, dtype=np.int64).reshape(-1, self._ndim)


class RaggedArray:
    """Lazy reader: ``len(arr)`` items; ``arr.get(i)`` reads only item i's chunks.

    The offsets/shapes chunk holding item i is decoded once and kept (LRU), so a random read costs
    one zarr call for the data; the end of item i is ``offsets[i] + prod(shapes[i])``, which keeps
    every read inside a single offsets chunk.
    """

    def __init__(self, group: zarr.Group, name: str) -> None:
        sub = group[name]
        self.name = name
        self.dtype: str = sub.attrs["dtype"]
        self._data, self._offsets, self._shapes = sub["data"], sub["offsets"], sub["shapes"]
        self._index_chunk = self._offsets.chunks[0]
        self._index = functools.lru_cache(maxsize=64)(self._read_index_chunk)

    def __len__(self) -> int:
        return self._shapes.shape[0]

    def _read_index_chunk(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = c * self._index_chunk, min((c + 1) * self._index_chunk, len(self))
        return np.asarray(self._offsets[lo:hi]), np.asarray(self._shapes[lo:hi])

    def get(self, index: int, as_torch: bool = False) -> Any:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"array {self.name!r} has {n} items, index {index} is out of range")
        index %= n
        offsets, shapes = self._index(index // self._index_chunk)
        start = int(offsets[index % self._index_chunk])
        shape = tuple(int(x) for x in shapes[index % self._index_chunk])
        raw = np.asarray(self._data[start : start + math.prod(shape)]).reshape(shape)
        return from_storage(raw, self.dtype, as_torch)
