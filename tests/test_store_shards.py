"""KV storage in zarr shards: a generated GSM8K dataset of 20 questions holds one data file per array,
and one node's KV still reads on its own (its inner chunks and the shard index, nothing else)."""

from __future__ import annotations

import functools
import shutil
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


def _items(seed: int, n: int, most: int = 30) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, 1, 1, int(rng.integers(1, most)), 2)).astype(np.float32) for _ in range(n)]


def _write(path: Path, items: list[np.ndarray], codec: str = "none", stop: int | None = None, **kwargs) -> DatasetWriter:
    """Examples of one or two items each; with ``stop``, the writer is closed unfinished after it."""
    from latentbench.store.synthetic import INFO

    writer = DatasetWriter(path, kind="kv-shard", info=INFO, codec=codec, durable=False, **kwargs)
    cuts = [i for i in range(len(items)) if i % 3 != 2]  # examples of one item and of two, alternating
    groups = [items[a:b] for a, b in zip(cuts, [*cuts[1:], len(items)], strict=True)]
    for i, group in enumerate(groups[:stop]):
        if f"q{i}" in writer.completed_ids():
            continue
        with writer.example(f"q{i}") as ex:
            for item in group:
                ex.add_array("kv", item, owner="agent:0")
    if stop is not None:
        writer.close()
    return writer


@pytest.mark.parametrize("codec", ["none", "lz4", "zstd", "blosc-zstd-bitshuffle"])
@pytest.mark.parametrize(("n", "shard_chunks"), [(40, 8), (40, 1000), (1, 1000)])
def test_streamed_shards_are_the_bytes_zarr_writes(codec: str, n: int, shard_chunks: int, tmp_path: Path) -> None:
    """The shard files the writer streams (each array byte written once) equal, byte for byte, what
    zarr's own sharding codec writes for the same data, chunk and shard sizes: many shards with a
    partial last one, one shard cut to the array's size, and an array smaller than one inner chunk."""
    from latentbench.store.arrays import codec_chain

    items = _items(1, n)
    items[0][:] = 0  # an all-zero chunk: written all the same (write_empty_chunks)
    _write(tmp_path / "ds", items, codec, chunk_elements=64, shard_bytes=64 * 4 * shard_chunks).finalize()
    meta = open_dataset(tmp_path / "ds").manifest["arrays"]["kv"]
    flat = np.concatenate([i.reshape(-1) for i in items])
    ref = zarr.create_array(zarr.storage.LocalStore(tmp_path / "ref"), shape=flat.shape,
                            chunks=(meta["chunk_elements"],), shards=(meta["shard_elements"],), dtype=flat.dtype,
                            fill_value=0, compressors=codec_chain(codec, 4), config={"write_empty_chunks": True})
    ref[:] = flat
    ours = sorted((tmp_path / "ds/arrays.zarr/kv/data/c").iterdir())
    theirs = sorted((tmp_path / "ref/c").iterdir())
    assert [p.name for p in ours] == [p.name for p in theirs]
    assert len(ours) == (1 if shard_chunks == 1000 else -(-flat.size // (64 * shard_chunks)))
    for a, b in zip(ours, theirs, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    if n == 1:
        assert meta["chunk_elements"] == flat.size < 64


def test_array_bytes_reach_the_journal_only_as_tails(tmp_path: Path) -> None:
    """Whole inner chunks go straight to the shard file; a journal entry holds at most one chunk's
    worth of its example's elements (those after the last whole chunk), so the bytes are written once."""
    items = _items(2, 30, most=200)
    _write(tmp_path / "ds", items, chunk_elements=64, stop=30)  # closed unfinished: the journal stays
    journal = tmp_path / "ds/.journal"
    shard = journal / "arrays/kv/c/0"
    total = sum(i.nbytes for i in items)
    assert total - 64 * 4 <= shard.stat().st_size <= total + 4 * total // (64 * 4)  # + one crc32c per chunk
    for entry in journal.glob("*.lbj"):
        assert entry.stat().st_size < 64 * 4 + 4096, entry


@pytest.mark.parametrize("stop", [1, 4, 11])
def test_resume_mid_chunk_after_a_torn_shard_write_is_byte_identical(stop: int, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A run stopped after ``stop`` examples, whose shard file also got bytes of an example that never
    committed (a kill between the shard write and the journal entry), resumes from the entries' tails
    and cuts the junk: the dataset equals an uninterrupted run's."""
    from latentbench.store.testing import file_hashes

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    items = _items(3, 20, most=60)
    _write(tmp_path / "plain", items, chunk_elements=64, shard_bytes=64 * 4 * 4).finalize()
    _write(tmp_path / "resumed", items, chunk_elements=64, shard_bytes=64 * 4 * 4, stop=stop)
    shards = sorted((tmp_path / "resumed/.journal/arrays/kv/c").iterdir(), key=lambda p: int(p.name))
    with open(shards[-1], "ab") as f:
        f.write(b"\x07" * 1000)  # a torn write
    (shards[-1].parent / str(len(shards) + 3)).write_bytes(b"junk")  # a shard no entry reached
    _write(tmp_path / "resumed", items, chunk_elements=64, shard_bytes=64 * 4 * 4).finalize()
    assert file_hashes(tmp_path / "resumed") == file_hashes(tmp_path / "plain")
    ds = open_dataset(tmp_path / "resumed")
    assert ds.validate() == []
    for i, item in enumerate(items):
        np.testing.assert_array_equal(ds.array("kv", i), item)


def test_a_journal_from_before_streaming_is_refused_not_finalized_without_its_arrays(tmp_path: Path) -> None:
    """An unfinished write by the previous layout (array bytes inside the journal entries) must not be
    finalized as if it had no arrays: one line naming the entry, and the lock is released."""
    import json
    import struct

    from latentbench.errors import UsageError
    from latentbench.store.journal import MAGIC

    _write(tmp_path / "ds", _items(4, 3), chunk_elements=64, stop=2)
    entry = sorted((tmp_path / "ds/.journal").glob("*.lbj"))[0]
    raw = entry.read_bytes()
    n = struct.unpack("<4sQ", raw[:12])[1]
    header = json.loads(raw[12:12 + n])
    del header["streams"]
    head = json.dumps(header).encode()
    entry.write_bytes(struct.pack("<4sQ", MAGIC, len(head)) + head)
    with pytest.raises(UsageError, match=f"{entry.name}: journal of an unfinished write by an older"):
        _write(tmp_path / "ds", _items(4, 3), chunk_elements=64)
    shutil.rmtree(tmp_path / "ds/.journal/arrays")
    (tmp_path / "ds/.journal" / entry.name).unlink()
    with pytest.raises(Exception, match="journal entry 0 is missing"):  # the lock was released: it got this far
        _write(tmp_path / "ds", _items(4, 3), chunk_elements=64)


def test_a_finalize_that_failed_after_the_shards_can_run_again_in_the_same_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last (partial) chunk here opens a new shard file; a finalize that fails after writing it and
    the indexes is run again by the same writer and gives the bytes of a clean run."""
    import latentbench.store.build as build
    from latentbench.store.testing import file_hashes

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    sizes = [30, 30, 30, 30, 13]  # 4 * 133 = 532 elements: 8 whole chunks of 64 (2 full shards), then 20
    items = [np.arange(4 * s, dtype=np.float32).reshape(2, 1, 1, s, 2) + i for i, s in enumerate(sizes)]
    kwargs = {"chunk_elements": 64, "shard_bytes": 64 * 4 * 4}
    _write(tmp_path / "plain", items, **kwargs).finalize()
    writer = _write(tmp_path / "retried", items, **kwargs)
    render = build.render_card
    monkeypatch.setattr(build, "render_card", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        writer.finalize()
    assert (tmp_path / "retried/.journal/arrays/kv/c/2").stat().st_size > 0  # the new shard was written
    monkeypatch.setattr(build, "render_card", render)
    writer.finalize()
    assert sorted(p.name for p in (tmp_path / "retried/arrays.zarr/kv/data/c").iterdir()) == ["0", "1", "2"]
    assert file_hashes(tmp_path / "retried") == file_hashes(tmp_path / "plain")
