"""KV storage in zarr shards: a generated GSM8K dataset of 20 questions holds one data file per array,
and one node's KV still reads on its own (its inner chunks and the shard index, nothing else)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import zarr.storage
from conftest import saved_tiny_model
from zarr.abc.store import RangeByteRequest, SuffixByteRequest

import latentbench.store
from latentbench.generate import GenerateRequest, generate
from latentbench.store import DatasetWriter, open_dataset
from latentbench.store.arrays import DEFAULT_SHARD_BYTES

SMALL = {"agents": 2, "branches": 2, "latent_steps": 2, "keep": 3, "max_new_tokens": 6}
CHUNK = 256  # inner chunk (elements), sized to the tiny model's node caches as 2^16 is to a real model's
QUESTIONS = 20


class Recorder(zarr.storage.WrapperStore):
    """Records (key, byte range) of every read."""

    def __init__(self, store: zarr.storage.StoreLike) -> None:
        super().__init__(store)
        self.reads: list[tuple[str, object]] = []

    async def get(self, key, prototype, byte_range=None):
        self.reads.append((key, byte_range))
        return await super().get(key, prototype, byte_range)


@pytest.fixture(scope="module")
def gsm8k20(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "gsm8k-latent-tree"
    with pytest.MonkeyPatch.context() as mp:  # default shard size; only the inner chunk is scaled down
        mp.setattr(latentbench.store, "DatasetWriter", functools.partial(DatasetWriter, chunk_elements=CHUNK))
        return generate(GenerateRequest(task="gsm8k", limit=QUESTIONS, model=str(saved_tiny_model("llama", seed=3)),
                                        output=str(out), method_args=SMALL, show_progress=False))


def test_twenty_questions_hold_one_data_file_per_array(gsm8k20: Path) -> None:
    ds = open_dataset(gsm8k20)
    assert ds.manifest["counts"]["examples"] == QUESTIONS and ds.validate() == []
    root = gsm8k20 / "arrays.zarr"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    data = [f for f in files if "/data/c/" in f]
    index = [f for f in files if "/offsets/c/" in f or "/shapes/c/" in f]
    assert data == [f"{name}/data/c/0" for name in sorted(ds.arrays)], files  # one shard file per array
    assert len(index) == 2 * len(ds.arrays), files
    assert len(files) == 1 + len(ds.arrays) * 7, files  # the rest is zarr.json metadata, fixed per array
    nodes = ds.table("nodes").height
    assert nodes >= 100 and len(data) + len(index) <= 9  # a handful of array files for 20 questions
    kv = ds.manifest["arrays"]["kv"]
    assert kv["elements"] > 50 * CHUNK  # ... that one-file-per-chunk would have spread over >50 files
    assert kv["shard_elements"] * 4 <= DEFAULT_SHARD_BYTES  # capped to the array, under the 1 GiB shard


def test_one_nodes_kv_reads_alone(gsm8k20: Path) -> None:
    ds = open_dataset(gsm8k20)
    segments = ds.table("kv_segments")
    offsets = np.concatenate([[0], np.cumsum([int(np.prod(s)) for s in segments["shape"].to_list()])])
    shard = gsm8k20 / "arrays.zarr/kv/data/c/0"
    itemsize = {"float32": 4, "float16": 2, "bfloat16": 2}[ds.manifest["arrays"]["kv"]["dtype"]]
    stored = CHUNK * itemsize + 4  # one inner chunk on disk: raw (codec "none") + crc32c
    for ref in (0, len(segments) // 2, len(segments) - 1):
        store = Recorder(zarr.storage.LocalStore(gsm8k20 / "arrays.zarr", read_only=True))
        opened = open_dataset(gsm8k20, array_store=store)
        opened.array_len("kv")  # metadata and index first; then count what reading node `ref` costs
        store.reads.clear()
        got = opened.array("kv", ref)
        assert got.shape == tuple(segments["shape"][ref])
        whole = zarr.open_array(gsm8k20 / "arrays.zarr/kv/data", mode="r")[offsets[ref] : offsets[ref + 1]]
        np.testing.assert_array_equal(got.reshape(-1), whole)
        chunks = range(offsets[ref] // CHUNK, (offsets[ref + 1] - 1) // CHUNK + 1)
        ranges = set()
        for key, rng in store.reads:
            if key == "kv/data/c/0":
                assert isinstance(rng, RangeByteRequest | SuffixByteRequest), rng  # never the whole shard
                if isinstance(rng, RangeByteRequest):
                    ranges.add((rng.start, rng.end))
        assert ranges == {(c * stored, (c + 1) * stored) for c in chunks}, (ref, store.reads)
        read = sum(e - s for s, e in ranges)
        assert read < (offsets[ref + 1] - offsets[ref] + 2 * CHUNK) * itemsize + 8 < shard.stat().st_size / 20


def test_the_local_reader_fetches_only_the_nodes_chunks_and_the_index(gsm8k20: Path) -> None:
    """Local datasets read through ``store/shards.py`` (pread, no zarr event loop): same values as zarr,
    and only the node's inner chunks plus the shard index leave the disk."""
    from unittest import mock

    from latentbench.store.shards import LocalShards

    ds = open_dataset(gsm8k20)
    segments = ds.table("kv_segments")
    offsets = np.concatenate([[0], np.cumsum([int(np.prod(s)) for s in segments["shape"].to_list()])])
    itemsize = {"float32": 4, "float16": 2, "bfloat16": 2}[ds.manifest["arrays"]["kv"]["dtype"]]
    stored = CHUNK * itemsize + 4
    shard_size = (gsm8k20 / "arrays.zarr/kv/data/c/0").stat().st_size
    per_shard = ds.manifest["arrays"]["kv"]["shard_elements"] // CHUNK
    reads: list[tuple[int, int]] = []
    real = LocalShards._pread

    def pread(self: LocalShards, fd: int, shard: int, offset: int, length: int) -> bytes:
        reads.append((offset, offset + length))
        return real(self, fd, shard, offset, length)

    for ref in (0, len(segments) // 2, len(segments) - 1):
        reads.clear()
        with mock.patch.object(LocalShards, "_pread", pread):
            got = open_dataset(gsm8k20).array("kv", ref)
        whole = zarr.open_array(gsm8k20 / "arrays.zarr/kv/data", mode="r")[offsets[ref] : offsets[ref + 1]]
        np.testing.assert_array_equal(np.asarray(got).reshape(-1), whole)
        chunks = range(offsets[ref] // CHUNK, (offsets[ref + 1] - 1) // CHUNK + 1)
        index = (shard_size - 16 * per_shard - 4, shard_size)
        assert sorted(reads) == sorted([index, *((c * stored, (c + 1) * stored) for c in chunks)]), ref


@pytest.mark.parametrize("codec", ["none", "lz4", "zstd", "blosc-zstd-bitshuffle"])
def test_the_local_reader_matches_zarr_for_every_codec_across_shards(codec: str, tmp_path: Path) -> None:
    from latentbench.store.synthetic import INFO

    rng = np.random.default_rng(0)
    items = [rng.standard_normal((2, 1, 1, int(rng.integers(1, 30)), 2)).astype(np.float32) for _ in range(40)]
    items[5][:] = 0  # an all-zero stretch (zarr may leave such a chunk unwritten: read as fill)
    writer = DatasetWriter(tmp_path / codec, kind="kv-shard", info=INFO, codec=codec, chunk_elements=64,
                           shard_bytes=64 * 4 * 8, durable=False)  # 8 inner chunks per shard: many shards
    for i, item in enumerate(items):
        with writer.example(f"q{i}") as ex:
            ex.add_array("kv", item, owner="agent:0")
    writer.finalize()
    local = open_dataset(tmp_path / codec)
    assert local._array("kv")._local is not None
    assert len(list((tmp_path / codec / "arrays.zarr/kv/data/c").iterdir())) > 4
    through_zarr = open_dataset(tmp_path / codec, array_store=zarr.storage.LocalStore(
        tmp_path / codec / "arrays.zarr", read_only=True))
    assert through_zarr._array("kv")._local is None
    for i, item in enumerate(items):
        np.testing.assert_array_equal(local.array("kv", i), item)
        np.testing.assert_array_equal(through_zarr.array("kv", i), item)
