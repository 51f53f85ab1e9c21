"""`latentbench validate` / `info` on good and corrupted datasets: one line per problem, exit 2."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import typer
import zarr
from typer.testing import CliRunner

from latentbench.cli.store import register
from latentbench.errors import LatentbenchError
from latentbench.store.synthetic import make_synthetic_dataset
from latentbench.store.testing import file_hashes

NODES = "tables/nodes/nodes-00000-of-00001.parquet"


def run_cli(*args: str) -> tuple[int, str]:
    """Invoke the store commands the way latentbench.cli.main does (LatentbenchError -> exit 2)."""
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, [str(a) for a in args])
    if isinstance(result.exception, LatentbenchError):
        return 2, result.output + f"error: {result.exception}\n"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "ds"
    make_synthetic_dataset(path, "latent-tree", n=4, extra_kinds=("kv-shard",), chunk_elements=64)
    return path


@pytest.fixture
def copy(good, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(good, dst)
    return dst


def _manifest(path, **changes):
    m = json.loads((path / "manifest.json").read_text())
    for key, value in changes.items():
        m[key] = value
    (path / "manifest.json").write_text(json.dumps(m))


def truncate_parquet(p):
    f = p / NODES
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def drop_zarr_array(p):
    shutil.rmtree(p / "arrays.zarr" / "kv")


def wrong_schema_version(p):
    _manifest(p, kinds={"latent-tree": 2, "kv-shard": 1}, schema_version=2)


def unknown_kind(p):
    _manifest(p, kind="latent-forest", kinds={"latent-forest": 1, "kv-shard": 1})


def flip_a_bit(p):
    f = p / "arrays.zarr" / "kv" / "data" / "c" / "0"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x10
    f.write_bytes(bytes(data))


def offsets_not_monotone(p):
    arr = zarr.open_array(p / "arrays.zarr" / "kv" / "offsets", mode="r+")
    offsets = arr[:]
    offsets[2], offsets[3] = offsets[3], offsets[2]
    arr[:] = offsets


def reference_out_of_range(p):
    frame = pl.read_parquet(p / NODES)
    frame.with_columns(kv_ref=pl.when(pl.col("node_id") == 3).then(999).otherwise(pl.col("kv_ref"))).write_parquet(p / NODES)
    rehash(p, NODES)  # as a buggy writer would leave it: the hash matches, the reference does not


def rehash(p, rel):
    m = json.loads((p / "manifest.json").read_text())
    m["files"][rel] = {"sha256": hashlib.sha256((p / rel).read_bytes()).hexdigest(), "bytes": (p / rel).stat().st_size}
    (p / "manifest.json").write_text(json.dumps(m))


def missing_manifest(p):
    (p / "manifest.json").unlink()


def stray_file(p):
    (p / "tables" / "nodes" / "extra.parquet").write_bytes(b"x")


CASES = [
    (truncate_parquet, NODES, "(truncated or modified)"),  # checked by size and hash first, never parsed
    (truncate_parquet, NODES, "manifest.json says"),
    (drop_zarr_array, "arrays.zarr/kv", "missing or unreadable Zarr array"),
    (wrong_schema_version, "manifest.json", "latent-tree schema version 2 is not supported"),
    (unknown_kind, "manifest.json", "unknown dataset kind 'latent-forest'"),
    (flip_a_bit, "arrays.zarr/kv/data/c/0", "sha256 mismatch"),
    (offsets_not_monotone, "arrays.zarr/kv/offsets", "not monotone at item 2"),
    (reference_out_of_range, NODES, "column 'kv_ref' has value 999, array 'kv' has"),
    (missing_manifest, "manifest.json", "missing (not a latentbench dataset directory)"),
    (stray_file, "tables/nodes/extra.parquet", "not listed in manifest.json"),
]


def test_valid_dataset_passes(good):
    code, out = run_cli("validate", good)
    assert code == 0 and out.startswith(f"ok: {good} (latent-tree v0.1.0, 4 examples,")


@pytest.mark.parametrize(("corrupt", "file", "problem"), CASES, ids=[f"{c.__name__}-{p[:12]}" for c, _, p in CASES])
def test_corruption_is_reported_naming_the_file(copy, corrupt, file, problem):
    corrupt(copy)
    before = file_hashes(copy) if (copy / "manifest.json").exists() else None
    code, out = run_cli("validate", copy)
    assert code == 2
    lines = out.strip().splitlines()
    assert any(line.startswith(f"{copy / file}: ") and problem in line for line in lines), out
    assert all(line.startswith(str(copy)) for line in lines), out  # every line names a file
    if before is not None:
        assert file_hashes(copy) == before  # validation never touches the dataset


@pytest.mark.parametrize(("corrupt", "problem"), [
    (wrong_schema_version, "latent-tree schema version 2 is not supported"),
    (unknown_kind, "unknown dataset kind 'latent-forest'"),
    (missing_manifest, "missing"),
])
def test_info_on_a_bad_manifest_is_a_one_line_error(copy, corrupt, problem):
    corrupt(copy)
    code, out = run_cli("info", copy)
    assert code == 2
    assert out.strip() == out.strip().splitlines()[-1]  # exactly one line
    assert out.startswith(f"error: {copy / 'manifest.json'}: ") and problem in out


def test_info_summarises(good):
    code, out = run_cli("info", good)
    assert code == 0
    fields = dict(line.split(None, 1) if not line.startswith(("table", "array")) else
                  (" ".join(line.split()[:2]), " ".join(line.split()[2:])) for line in out.splitlines())
    assert fields["kind"] == "latent-tree (+ kv-shard), schema v1"
    assert fields["examples"] == "4" and fields["version"] == "0.1.0"
    assert fields["table nodes"].startswith("28 rows in 1 file(s)")
    assert fields["array kv"].startswith("28 tensors, bfloat16")


def test_real_cli_entry_point_exits_2(copy):
    """End to end through `python -m latentbench`, as a user runs it."""
    flip_a_bit(copy)
    proc = subprocess.run([sys.executable, "-m", "latentbench", "validate", str(copy)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.strip() == f"{copy}/arrays.zarr/kv/data/c/0: sha256 mismatch (modified since manifest.json was written)"
    assert np.all([not line.startswith("Traceback") for line in proc.stderr.splitlines()])
