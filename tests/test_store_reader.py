"""Reader: lazy array access touches only the item's chunks; dtypes and errors."""

from __future__ import annotations

import numpy as np
import pytest
import zarr.storage
from test_store_cli import rehash

from latentbench.errors import DataNotFoundError, DatasetIntegrityError, SchemaError, UsageError
from latentbench.store import DatasetWriter, open_dataset
from latentbench.store.synthetic import INFO, make_synthetic_dataset

CHUNK = 100


class CountingStore(zarr.storage.WrapperStore):
    """Records every key zarr reads, and the byte range of each read."""

    def __init__(self, store):
        super().__init__(store)
        self.keys: list[str] = []
        self.reads: list[tuple[str, object]] = []

    async def get(self, key, prototype, byte_range=None):
        self.keys.append(key)
        self.reads.append((key, byte_range))
        return await super().get(key, prototype, byte_range)

    async def get_partial_values(self, prototype, key_ranges):
        key_ranges = list(key_ranges)
        self.keys += [k for k, _ in key_ranges]
        self.reads += key_ranges
        return await super().get_partial_values(prototype, key_ranges)


SHARD_CHUNKS = 5  # inner chunks per shard file


@pytest.fixture(scope="module")
def kv_dataset(tmp_path_factory):
    """30 KV tensors of 12..127 elements each in float16, 100 elements per inner chunk, 5 per shard."""
    path = tmp_path_factory.mktemp("kv") / "ds"
    rng = np.random.default_rng(0)
    tensors = []
    w = DatasetWriter(path, kind="kv-shard", info=INFO, chunk_elements=CHUNK, shard_bytes=SHARD_CHUNKS * CHUNK * 2)
    for i in range(30):
        with w.example(f"e{i}") as ex:
            t = rng.standard_normal((2, 1, 2, int(rng.integers(3, 32)), 1)).astype(np.float16)
            assert ex.add_array("kv", t) == i
            tensors.append(t)
    w.finalize()
    return path, tensors


def test_reading_one_item_touches_only_its_inner_chunks(kv_dataset):
    """Per shard file the item overlaps: its index ((-1, -1) below), then exactly the byte ranges of the inner chunks
    the item overlaps (codec "none": 100 float16 + a 4-byte crc32c each), nothing else of the shard."""
    from zarr.abc.store import RangeByteRequest, SuffixByteRequest

    path, tensors = kv_dataset
    offsets = np.cumsum([0] + [t.size for t in tensors])
    stored = CHUNK * 2 + 4
    shards = sorted((path / "arrays.zarr/kv/data/c").iterdir())
    assert len(shards) == -(-offsets[-1] // (SHARD_CHUNKS * CHUNK)) >= 4, shards  # many shard files
    for i in (0, 7, 17, 29):
        store = CountingStore(zarr.storage.LocalStore(path / "arrays.zarr", read_only=True))
        ds = open_dataset(path, array_store=store)
        ds.array_len("kv")  # open metadata first, then count only what reading item i costs
        store.reads.clear()
        store.keys.clear()
        np.testing.assert_array_equal(ds.array("kv", i), tensors[i])
        chunks = range(offsets[i] // CHUNK, (offsets[i + 1] - 1) // CHUNK + 1)
        want = sorted({(f"kv/data/c/{c // SHARD_CHUNKS}", (-1, -1)) for c in chunks} | {
            (f"kv/data/c/{c // SHARD_CHUNKS}", ((c % SHARD_CHUNKS) * stored, (c % SHARD_CHUNKS + 1) * stored))
            for c in chunks})
        got = []
        for key, rng in store.reads:
            if key.startswith("kv/data/c/"):
                assert isinstance(rng, RangeByteRequest | SuffixByteRequest), (key, rng)  # never a whole shard
                got.append((key, (-1, -1) if isinstance(rng, SuffixByteRequest) else (rng.start, rng.end)))
        assert sorted(set(got)) == want, (i, store.reads)
        assert sorted({k for k in store.keys if not k.startswith("kv/data/")}) == [
            "kv/offsets/c/0", "kv/shapes/c/0/0"], store.keys


def test_numpy_and_torch_outputs(kv_dataset):
    import torch

    path, tensors = kv_dataset
    ds = open_dataset(path)
    assert ds.array("kv", -1).dtype == np.float16 and ds.array("kv", -1).shape == tensors[-1].shape
    t = ds.array("kv", 3, torch=True)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float16
    assert torch.equal(t, torch.from_numpy(tensors[3]))
    with pytest.raises(IndexError, match="30 items"):
        ds.array("kv", 30)
    with pytest.raises(UsageError, match="no array 'latent'"):
        ds.array("latent", 0)
    with pytest.raises(UsageError, match="no table 'nodes'"):
        ds.table("nodes")


def test_bfloat16_round_trips_bit_exact(tmp_path):
    import torch

    bits = torch.tensor([0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC1, 0x0001, 0x3F80, 0xFFFF], dtype=torch.int32)
    t = bits.to(torch.int16).view(torch.bfloat16).reshape(2, 1, 1, 2, 2)  # ±0, ±inf, NaN payload, subnormal
    w = DatasetWriter(tmp_path / "ds", kind="kv-shard", info=INFO)
    with w.example("a") as ex:
        ex.add_array("kv", t)
    w.finalize()
    ds = open_dataset(tmp_path / "ds")
    back = ds.array("kv", 0)
    assert back.dtype == torch.bfloat16 and torch.equal(back.view(torch.int16), t.view(torch.int16))
    assert ds.manifest["arrays"]["kv"]["storage_dtype"] == "uint16"
    assert ds.table("kv_segments").row(0, named=True)["dtype"] == "bfloat16"


def test_open_missing_or_corrupt(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError, match="no such dataset directory"):
        open_dataset(tmp_path / "nope")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match="alice/ds@v1.0.0: no such dataset directory, and as a Hub id: "
                                                ".* not in the cache .* HF_HUB_OFFLINE"):
        open_dataset("alice/ds@v1.0.0")
    make_synthetic_dataset(tmp_path / "ds", "spd-trace", n=2)
    part = tmp_path / "ds" / "tables" / "steps" / "steps-00000-of-00001.parquet"
    part.write_bytes(part.read_bytes()[:100])
    ds = open_dataset(tmp_path / "ds")  # opening reads only the manifest
    with pytest.raises(DatasetIntegrityError, match=r"steps-00000-of-00001.parquet: size 100 bytes, manifest.json "
                                                    r"says \d+ \(truncated or modified\)"):
        ds.table("steps")


def test_table_is_checked_against_schema_on_load(tmp_path):
    import polars as pl

    make_synthetic_dataset(tmp_path / "ds", "spd-trace", n=2)
    part = tmp_path / "ds" / "tables" / "traces" / "traces-00000-of-00001.parquet"
    pl.read_parquet(part).with_columns(acceptance_rate=pl.lit(1.5)).write_parquet(part)
    rehash(tmp_path / "ds", "tables/traces/traces-00000-of-00001.parquet")  # a buggy writer: hash right, row wrong
    with pytest.raises(SchemaError, match="traces-00000-of-00001.parquet: column 'acceptance_rate' has value 1.5 above maximum 1"):
        open_dataset(tmp_path / "ds").table("traces")
