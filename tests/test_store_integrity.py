"""Never silently wrong data: every read path checks each file against manifest.json before using it.

The proof flips one byte at every offset of a small Parquet file (and of a Zarr chunk) and reads it
through every path: each read must end in DatasetIntegrityError / exit 2 naming the file, never in
other values or a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import typer

from latentbench import provenance
from latentbench.cli import store as cli
from latentbench.errors import DatasetIntegrityError
from latentbench.methods.latent_tree.record import replay
from latentbench.store import open_dataset
from latentbench.store.synthetic import make_synthetic_dataset
from latentbench.train.data import TrainData

STEPS = "tables/steps/steps-00000-of-00001.parquet"
TREES = "tables/trees/trees-00000-of-00001.parquet"
LATENT = "arrays.zarr/latent/data/c/0"


@contextlib.contextmanager
def flipped(path: Path, offset: int) -> Iterator[None]:
    """Byte ``offset`` of ``path`` inverted in place (same size), restored afterwards."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([byte ^ 0xFF]))
    try:
        yield
    finally:
        with open(path, "r+b") as fh:
            fh.seek(offset)
            fh.write(bytes([byte]))


def age(root: Path, seconds: int = 3600) -> None:
    """Date every file back, as for any dataset not written this instant (its hashes become cacheable)."""
    then = time.time_ns() - seconds * 1_000_000_000
    for dirpath, _, names in os.walk(root):
        for name in names:
            os.utime(Path(dirpath) / name, ns=(then, then))


@pytest.fixture(scope="module")
def spd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smallest table file the store writes (an spd-trace steps table, ~4 KB)."""
    path = tmp_path_factory.mktemp("spd") / "ds"
    make_synthetic_dataset(path, "spd-trace", n=1)
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tree") / "ds"
    make_synthetic_dataset(path, "latent-tree", n=1, chunk_elements=16)  # many inner chunks in one shard
    return path


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replay must fail on the data before it loads a model."""
    import latentbench.models

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(latentbench.models, "load_model", refuse)


def assert_refused(read: Callable[[], object], path: Path, capsys: pytest.CaptureFixture[str], what: str) -> None:
    """``read`` ends as the CLI would end it with exit 2, with exactly one line, naming ``path``."""
    capsys.readouterr()
    try:
        read()
    except DatasetIntegrityError as err:
        line = str(err)
    except typer.Exit as exit_:  # validate and verify print their problems and exit 2 themselves
        assert exit_.exit_code == 2, what
        line = capsys.readouterr().out.rstrip("\n")
    else:
        raise AssertionError(f"{what}: read a corrupted file without an error")
    assert line == f"{path}: sha256 mismatch (modified since manifest.json was written)", (what, line)


@pytest.mark.slow
def test_a_byte_flip_anywhere_in_a_table_file_is_refused_by_every_read_path(spd: Path, capsys) -> None:
    target = spd / STEPS
    opened = open_dataset(spd)  # opened while the file was good: later reads still check it
    good = opened.table("steps")
    paths: dict[str, Callable[[], object]] = {
        "Dataset.table": lambda: opened.table("steps"),
        "open_dataset().table": lambda: open_dataset(spd).table("steps"),
        "to_hf": lambda: open_dataset(spd).to_hf("steps"),
        "TrainData": lambda: TrainData([spd], "steps"),
        "info": lambda: cli.info(str(spd)),
        "verify": lambda: cli.verify(spd),
        "validate": lambda: cli.validate(spd),
    }
    size = target.stat().st_size
    assert size < 5000  # small enough to try every offset
    for offset in range(size):
        with flipped(target, offset):
            for name, read in paths.items():
                assert_refused(read, target, capsys, f"{name} at offset {offset}")
    assert opened.table("steps").equals(good)  # restored: readable again


@pytest.mark.slow
def test_replay_refuses_a_byte_flip_anywhere_in_its_table_before_loading_a_model(tree: Path, no_model) -> None:
    target = tree / TREES
    for offset in range(target.stat().st_size):
        with flipped(target, offset), pytest.raises(DatasetIntegrityError) as err:
            replay(tree, None, 0)
        assert str(err.value) == f"{target}: sha256 mismatch (modified since manifest.json was written)", offset


def bytes_read_for(tree: Path, name: str, index: int, key: str) -> set[int]:
    """Offsets of shard file ``key`` that reading item ``index`` of array ``name`` fetches (the local
    shard reader's preads: the path every local read takes)."""
    from unittest import mock

    from latentbench.store.shards import LocalShards

    seen: set[int] = set()
    real, shard = LocalShards._pread, int(key.rsplit("/", 1)[1])

    def pread(self: LocalShards, fd: int, s: int, offset: int, length: int) -> bytes:
        if s == shard:
            seen.update(range(offset, offset + length))
        return real(self, fd, s, offset, length)

    with mock.patch.object(LocalShards, "_pread", pread):
        open_dataset(tree).array(name, index)
    assert seen, "the read did not go through the local shard reader"
    return seen


@pytest.mark.slow
def test_a_byte_flip_anywhere_in_an_array_shard_is_refused_or_unread(tree: Path) -> None:
    """A shard is read in parts (one node's inner chunks + the shard index), each checked by its crc32c:
    a flip in a byte the read fetches is one line naming the shard; a flip elsewhere leaves this read's
    values exact (never different data); `verify` catches every flip (whole-file sha256)."""
    target = tree / LATENT
    opened = open_dataset(tree)
    good = opened.array("latent", 0)
    data = TrainData([tree], "nodes", val_fraction=0)
    row = next(r for r in data.rows("train") if r["latent_ref"] == 0)
    read_bytes = bytes_read_for(tree, "latent", 0, LATENT.removeprefix("arrays.zarr/"))
    size = target.stat().st_size
    assert 0 < len(read_bytes) < size / 2  # a part of the shard, not all of it
    refused, offsets = 0, sorted(set(range(size)))
    for offset in offsets:
        with flipped(target, offset):
            for read in (lambda: opened.array("latent", 0), lambda: data.array(row, "latent_ref"),
                         lambda: open_dataset(tree).array("latent", 0)):
                try:
                    value = read()
                except DatasetIntegrityError as err:
                    assert str(err).startswith(f"{target}: "), (offset, str(err))
                    refused += 1
                    continue
                assert offset not in read_bytes, offset  # a byte it read changed: must not come back
                np.testing.assert_array_equal(np.asarray(value), good)
            if offset % 5 == 0:
                assert any(p.startswith(f"{target}: sha256 mismatch") for p in open_dataset(tree).verify()), offset
    assert refused >= 3 * len(read_bytes)
    np.testing.assert_array_equal(opened.array("latent", 0), good)


def test_missing_and_unlisted_array_files_are_refused_not_read_as_fill(tree: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(tree, copy)
    (copy / LATENT).unlink()  # zarr alone would hand back zeros for a missing chunk
    with pytest.raises(DatasetIntegrityError, match=f"^{copy / LATENT}: missing"):
        open_dataset(copy).array("latent", 0)
    shutil.copy(tree / LATENT, copy / LATENT)
    (copy / "arrays.zarr/latent/data/c/9").write_bytes(b"\0" * 8)
    ds = open_dataset(copy)
    assert ds.array("latent", 0).shape  # listed files still read
    with pytest.raises(DatasetIntegrityError, match="c/9: not listed in manifest.json"):
        asyncio_get(ds, "latent/data/c/9")


def asyncio_get(ds, key: str) -> object:
    """What zarr does for a chunk key, through the dataset's verifying store."""
    import zarr.core.buffer
    from zarr.core.sync import sync

    ds.array_len("latent")  # opens the group
    return sync(ds._group.store.get(key, zarr.core.buffer.default_buffer_prototype()))


def test_truncated_table_is_one_line_naming_the_file(spd: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(spd, copy)
    part = copy / STEPS
    part.write_bytes(part.read_bytes()[:-10])
    with pytest.raises(DatasetIntegrityError, match=rf"^{part}: size \d+ bytes, manifest.json says \d+ "
                                                    r"\(truncated or modified\)$"):
        open_dataset(copy).table("steps")


def test_hashes_are_remembered_per_process_until_the_file_changes(spd: Path, tmp_path: Path, monkeypatch) -> None:
    import shutil

    calls: list[str] = []
    real = provenance.sha256_file
    monkeypatch.setattr(provenance, "sha256_file", lambda p: calls.append(Path(p).name) or real(p))
    fresh = tmp_path / "fresh"
    shutil.copytree(spd, fresh)
    os.utime(fresh / STEPS)  # written just now (copytree keeps the old mtime)
    ds = open_dataset(fresh)
    ds.table("steps")
    ds.table("steps")
    assert calls.count("steps-00000-of-00001.parquet") == 2  # just written: hashed on every read
    aged = tmp_path / "aged"
    shutil.copytree(spd, aged)
    age(aged)
    calls.clear()
    ds = open_dataset(aged)
    for _ in range(3):
        ds.table("steps")
        open_dataset(aged).table("steps")
    assert calls.count("steps-00000-of-00001.parquet") == 1  # once per process
    with flipped(aged / STEPS, 100), pytest.raises(DatasetIntegrityError, match="sha256 mismatch"):
        ds.table("steps")  # changed (new mtime): hashed again


def test_verify_command_and_the_card_carry_every_hash(spd: Path, tmp_path: Path, capsys) -> None:
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(spd, copy)
    (copy / ".gitattributes").write_text("*.parquet filter=lfs\n")  # as in a copy of the Hub repo
    (copy / ".cache" / "huggingface").mkdir(parents=True)
    (copy / ".cache" / "huggingface" / "x.lock").write_text("")
    cli.verify(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    assert capsys.readouterr().out == f"ok: {copy} ({len(manifest['files'])} files match manifest.json)\n"
    card = (copy / "README.md").read_text()
    for rel in (STEPS, "tables/traces/traces-00000-of-00001.parquet"):
        entry = manifest["files"][rel]
        assert f"| `{rel}` | {entry['bytes']} | `{entry['sha256']}` |" in card
    assert "latentbench verify" in card
    (copy / "tables" / "steps" / "extra.parquet").write_bytes(b"x")
    with pytest.raises(typer.Exit):
        cli.verify(copy)
    assert capsys.readouterr().out == f"{copy / 'tables/steps/extra.parquet'}: not listed in manifest.json\n"


@pytest.mark.parametrize("command", [["info"], ["verify"], ["replay", "--node", "0"]])
def test_cli_exits_2_with_one_line(tree: Path, tmp_path: Path, command: list[str]) -> None:
    """End to end, as a user runs it: `python -m latentbench ...` on a corrupted table."""
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(tree, copy)
    with flipped(copy / TREES, 1000):
        proc = subprocess.run([sys.executable, "-m", "latentbench", command[0], str(copy), *command[1:]],
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    line = f"{copy / TREES}: sha256 mismatch (modified since manifest.json was written)"
    out = proc.stdout if command[0] == "verify" else proc.stderr
    assert out.strip() == (line if command[0] == "verify" else f"error: {line}"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_read_parquet_turns_a_reader_panic_into_one_line(tmp_path: Path, monkeypatch) -> None:
    """Defence in depth: a file that passes no hash check never reaches polars, but if one did, a Rust panic
    (pyo3's PanicException, a BaseException) still becomes DatasetIntegrityError."""
    import polars as pl

    from latentbench.store.parquet import read_parquet

    class PanicException(BaseException):
        pass

    def panic(path: object) -> None:
        raise PanicException("called `Option::unwrap()` on a `None` value")

    monkeypatch.setattr(pl, "read_parquet", panic)
    target = tmp_path / "t.parquet"
    target.write_bytes(b"PAR1")
    with pytest.raises(DatasetIntegrityError, match=r"t.parquet: not a readable Parquet file \(reader panic"):
        read_parquet(target)
