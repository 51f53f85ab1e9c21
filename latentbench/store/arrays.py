"""Ragged tensor arrays in a Zarr v3 group: ``<name>/data`` (flat), ``<name>/offsets``, ``<name>/shapes``.

Item ``i`` is ``data[offsets[i]:offsets[i+1]].reshape(shapes[i])``. The flat array runs in example
order and is stored with zarr's sharding codec: one file per shard (``shard_bytes``, many questions),
holding inner chunks of ``chunk_elements`` that are read on their own, so reading one item touches
the shard's index and only the inner chunks its range overlaps, plus one chunk of ``offsets`` and
``shapes``. Inner chunks end in a crc32c (zarr's codec), so a partial read is checked without hashing
the whole shard. bfloat16 has no numpy dtype: it is stored as its raw 16 bits (uint16, bit-exact) and
the real dtype is kept in the group's attributes. Layouts: ``ragged-v1`` (one file per chunk, read
only) and ``ragged-sharded-v1`` (written).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from latentbench.errors import DatasetIntegrityError, UsageError

if TYPE_CHECKING:
    import zarr

CODECS = ("none", "lz4", "zstd", "blosc-zstd-bitshuffle")
# Picked by bench/store/run.py on real SmolLM2 KV caches (see bench/store/README.md).
DEFAULT_CODEC = "none"
DEFAULT_CHUNK_ELEMENTS = 1 << 16  # inner chunk: 256 KiB of float32, 128 KiB of float16 (bench/store)
DEFAULT_SHARD_BYTES = 1 << 30  # one file per GiB of tensors (~1,100 SmolLM2 float32 node caches)
INDEX_CHUNK = 4096  # items per inner chunk of offsets/shapes
INDEX_SHARD = 1 << 20  # items per file of offsets/shapes
LAYOUT = "ragged-sharded-v1"

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
    if isinstance(tensor, np.ndarray):  # copied: the writer may write it after the caller changed it
        return np.array(tensor, order="C", copy=True), tensor.dtype.name
    raise UsageError(f"arrays must be numpy arrays or torch tensors, got {type(tensor).__name__}")


def from_storage(raw: np.ndarray, dtype: str, as_torch: bool = False) -> Any:
    """Inverse of :func:`to_storage`. bfloat16 always comes back as a torch tensor (numpy has none)."""
    if dtype == "bfloat16" or as_torch:
        import torch

        if dtype == "bfloat16":
            return torch.from_numpy(raw.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(raw)
    return raw


# Inner-chunk compressors: (zarr codec, the numcodecs codec that encodes the same bytes) by name.
_COMPRESSORS: dict[str, tuple[str, dict[str, Any]] | None] = {
    "none": None,
    "lz4": ("blosc", {"cname": "lz4", "clevel": 1, "shuffle": "shuffle"}),
    "zstd": ("zstd", {"level": 1}),
    "blosc-zstd-bitshuffle": ("blosc", {"cname": "zstd", "clevel": 5, "shuffle": "bitshuffle"}),
}
_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


def _compressor(codec: str) -> tuple[str, dict[str, Any]] | None:
    if codec not in _COMPRESSORS:
        raise UsageError(f"unknown codec {codec!r} (choose from {', '.join(CODECS)})")
    return _COMPRESSORS[codec]


def codec_chain(codec: str, itemsize: int) -> list[Any]:
    """Bytes-to-bytes codecs of one inner chunk: the compressor (if any), then a crc32c of the result."""
    import zarr.codecs as zc

    comp = _compressor(codec)
    if comp is None:
        return [zc.Crc32cCodec()]
    name, config = comp
    compressor = (zc.BloscCodec(**config, typesize=itemsize) if name == "blosc" else zc.ZstdCodec(**config))
    return [compressor, zc.Crc32cCodec()]


def chunk_encoder(codec: str, itemsize: int) -> Any:
    """bytes -> the compressed inner chunk, as zarr's codec of :func:`codec_chain` writes it (the same
    numcodecs call, so the shard files streams.py writes are byte-identical to zarr's); None: stored as is."""
    comp = _compressor(codec)
    if comp is None:
        return None
    name, config = comp
    if name == "zstd":
        from numcodecs import Zstd

        return Zstd(level=config["level"], checksum=False).encode
    from numcodecs.blosc import Blosc

    blosc = Blosc.from_config({"cname": config["cname"], "clevel": config["clevel"],
                               "shuffle": _SHUFFLE[config["shuffle"]], "blocksize": 0, "typesize": itemsize})
    return lambda data: blosc.encode(np.frombuffer(data, dtype=np.uint8))


def shard_elements(chunk_elements: int, shard_bytes: int, itemsize: int) -> int:
    """Elements per shard: a whole number of inner chunks, at least one."""
    return chunk_elements * max(1, shard_bytes // (chunk_elements * itemsize))


def create_ragged(group: zarr.Group, name: str, *, dtype: str, shapes: list[list[int]], ndim: int, codec: str,
                  chunk_elements: int, shard_elements: int, attributes: dict[str, Any]) -> None:
    """A ragged array's zarr metadata and its ``offsets`` and ``shapes``; ``data``'s shard files are
    written by streams.py (zarr's sharding layout for these chunk and shard sizes)."""
    sdt = np.dtype(storage_dtype(dtype))
    sub = group.create_group(name, attributes={**attributes, "dtype": dtype, "storage_dtype": sdt.name})
    elements = sum(math.prod(s) for s in shapes)
    sub.create_array("data", shape=(elements,), chunks=(chunk_elements,), shards=(shard_elements,), dtype=sdt,
                     fill_value=0, compressors=codec_chain(codec, sdt.itemsize), dimension_names=["element"],
                     config={"write_empty_chunks": True})
    index = {"dtype": "int64", "compressors": codec_chain("zstd", 8), "fill_value": 0,
             "config": {"write_empty_chunks": True}}
    items = len(shapes)
    index_shard = min(INDEX_SHARD, -(-(items + 1) // INDEX_CHUNK) * INDEX_CHUNK)
    offsets = sub.create_array("offsets", shape=(items + 1,), chunks=(INDEX_CHUNK,), shards=(index_shard,),
                               dimension_names=["item"], **index)
    offsets[:] = np.concatenate([[0], np.cumsum([math.prod(s) for s in shapes], dtype=np.int64)]).astype(np.int64)
    array = sub.create_array("shapes", shape=(items, ndim), chunks=(INDEX_CHUNK, ndim),
                             shards=(index_shard, ndim), dimension_names=["item", "axis"], **index)
    if shapes:
        array[:] = np.asarray(shapes, dtype=np.int64).reshape(-1, ndim)


class RaggedArray:
    """Lazy reader: ``len(arr)`` items; ``arr.get(i)`` reads only item i's chunks.

    The offsets/shapes chunk holding item i is decoded once and kept (LRU), so a random read costs
    one zarr call for the data; the end of item i is ``offsets[i] + prod(shapes[i])``, which keeps
    every read inside a single offsets chunk.
    """

    def __init__(self, group: zarr.Group, name: str, where: Any = None, local: Any = None) -> None:
        sub = group[name]
        self.name, self._where = name, where or name
        self._local = local  # a LocalShards for ``data`` (synchronous reads), or None: read through zarr
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
        try:
            if self._local is not None:
                raw = self._local.read(start, start + math.prod(shape)).reshape(shape)
            else:
                raw = np.asarray(self._data[start : start + math.prod(shape)]).reshape(shape)
        except DatasetIntegrityError:
            raise
        except Exception as exc:  # a bad crc32c, shard index or codec frame: the bytes on disk changed
            shard = self._data.shards[0] if self._data.shards else self._data.chunks[0]
            what = ("crc32c mismatch (modified since manifest.json was written)" if "checksum" in str(exc)
                    else f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
            raise DatasetIntegrityError(f"{self._where}/data/c/{start // shard}: {what}") from None
        return from_storage(raw, self.dtype, as_torch)
