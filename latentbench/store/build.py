"""Finalizing: journal entries -> Parquet tables, Zarr arrays, README.md card, manifest.json.

Everything is derived deterministically from the journal (rows sorted by explicit keys, arrays in
commit order, chunk-aligned writes, no timestamps in data files), so an interrupted-and-resumed
run and an uninterrupted one produce byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from latentbench.errors import SchemaError, UsageError
from latentbench.store.arrays import LAYOUT, create_ragged
from latentbench.store.journal import Entry, fsync_dir
from latentbench.store.manifest import (
    ARRAYS,
    CARD,
    MANIFEST,
    TABLES,
    build_manifest,
    file_table,
    read_manifest,
    render_card,
)
from latentbench.store.schema import TableSpec, polars_dtype
from latentbench.store.streams import ArrayStreams, link_or_copy

if TYPE_CHECKING:
    import polars as pl

    from latentbench.store.schema import ArraySpec, KindSpec


class DatasetWriter(Protocol):
    """What finalizing reads of a ``writer.DatasetWriter`` (a protocol, so this module stays below it)."""

    path: Path
    kind: str
    args: dict[str, Any]
    specs: list[KindSpec]
    tables: dict[str, TableSpec]
    arrays: dict[str, ArraySpec]
    meta: dict[str, Any]
    durable: bool
    streams: ArrayStreams

STAGING = ".staging"
OUTPUTS = (TABLES, ARRAYS, CARD)


def finalize(w: DatasetWriter, entries: list[Entry]) -> dict[str, Any]:
    staging = w.path / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    for name in OUTPUTS:  # leftovers of a finalize killed while moving files into place
        _remove(w.path / name)
    staging.mkdir()
    tables = write_tables(staging, w, entries)
    arrays, written = write_arrays(staging, w, entries)
    counts = {"examples": len(entries), "tables": {t: m["rows"] for t, m in tables.items()},
              "arrays": {a: m["items"] for a, m in arrays.items()}}
    common = dict(kind=w.kind, specs=w.specs, info=w.args["info"], counts=counts, tables=tables,
                  arrays=arrays, created=w.meta["created"], git=w.meta["git_sha"], packages=w.meta["packages"])
    # The card lists the data files' sha256 (for datasets.load_dataset users): hash them, then the card.
    files = file_table(staging, known=written)
    (staging / CARD).write_text(render_card(build_manifest(**common, files=files), w.specs))
    files = dict(sorted({**files, **file_table(staging, [CARD])}.items()))
    manifest = build_manifest(**common, files=files)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if w.durable:
        _fsync_tree(staging)
    for name in (*OUTPUTS, MANIFEST):  # manifest.json last: its arrival is the commit
        if (staging / name).exists():
            os.replace(staging / name, w.path / name)
    fsync_dir(w.path)
    shutil.rmtree(staging)
    return manifest


def write_tables(root: Path, w: DatasetWriter, entries: list[Entry]) -> dict[str, Any]:
    out = {}
    for name, spec in w.tables.items():
        rows = [row for e in entries for row in e.header["tables"].get(name, [])]
        frame = rows_to_frame(spec, rows).sort(list(spec.key), maintain_order=True)
        if frame.select(spec.key).is_duplicated().any():
            raise SchemaError(f"{w.path}: table {name!r} has duplicate keys {list(spec.key)} across examples")
        n_files = max(1, math.ceil(len(frame) / w.args["rows_per_file"]))
        files = []
        for i in range(n_files):
            rel = f"{TABLES}/{name}/{name}-{i:05d}-of-{n_files:05d}.parquet"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            part = frame.slice(i * w.args["rows_per_file"], w.args["rows_per_file"])
            part.write_parquet(root / rel, compression="zstd", statistics=True)
            files.append(rel)
        out[name] = {"kind": spec.kind, "files": files, "rows": len(frame), "key": list(spec.key)}
    return out


def rows_to_frame(spec: TableSpec, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows -> frame with exactly the schema's columns and dtypes (absent optional fields are null)."""
    import polars as pl

    columns = {}
    for col, cs in spec.columns.items():
        dtype = polars_dtype(cs)
        values = [row.get(col) for row in rows]
        if dtype == pl.Float64:  # JSON has one number type; ints in float columns must not trip strict
            values = [None if v is None else float(v) for v in values]
        elif dtype == pl.List(pl.Float64):
            values = [None if v is None else [None if x is None else float(x) for x in v] for v in values]
        columns[col] = pl.Series(col, values, dtype=dtype, strict=True)
    return pl.DataFrame(columns)


def write_arrays(root: Path, w: DatasetWriter, entries: list[Entry]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Zarr arrays -> (manifest ``arrays`` entries, {file: sha256 and size} of every file written).

    The data shards were streamed into the journal as examples committed (streams.py): here they get
    their last chunk and index and are linked into ``root``; zarr writes the metadata, offsets and
    shapes. Nothing is read back: the shards' hashes were kept up to date as they grew."""
    import zarr

    from latentbench.store.integrity import HashingStore

    shapes: dict[str, list[list[int]]] = {}
    dtypes: dict[str, dict[str, str]] = {}
    for e in entries:
        for spec in e.header["arrays"]:
            shapes.setdefault(spec["name"], []).append(spec["shape"])
            dtypes.setdefault(spec["name"], {"dtype": spec["dtype"], "storage_dtype": spec["storage_dtype"]})
    if not shapes:
        return {}, {}
    store = HashingStore(zarr.storage.LocalStore(root / ARRAYS), ARRAYS)
    group = zarr.open_group(store, mode="w", zarr_format=3, attributes={"latentbench_layout": LAYOUT})
    out, written = {}, {}
    for name in [a for a in w.arrays if a in shapes]:  # schema order, not first-use order
        spec = w.arrays[name]
        data = root / ARRAYS / name / "data"
        chunk, shard, files = w.streams.streams[name].finish(data, link_or_copy)
        written.update({f"{ARRAYS}/{name}/data/c/{s}": f for s, f in files.items()})
        create_ragged(group, name, dtype=dtypes[name]["dtype"], shapes=shapes[name], ndim=spec.ndim,
                      codec=w.args["codec"], chunk_elements=chunk, shard_elements=shard,
                      attributes={"kind": spec.kind, "axes": list(spec.axes)})
        out[name] = {"kind": spec.kind, **dtypes[name], "items": len(shapes[name]),
                     "elements": sum(math.prod(s) for s in shapes[name]), "ndim": spec.ndim,
                     "codec": w.args["codec"], "chunk_elements": chunk, "shard_elements": shard}
    return out, {**store.written, **written}


def check_finished(path: Path, args: dict[str, Any]) -> dict[str, Any]:
    """The manifest of an already finalized dataset, if it was written with these arguments."""
    manifest = read_manifest(path)
    info = args["info"]
    expected = {"kind": args["kind"], "kinds": sorted([args["kind"], *args["extra_kinds"]]),
                **{k: info[k] for k in ("version", "task", "split", "model", "license", "seed", "method_config")}}
    if "data_files" in manifest:  # datasets written before data files were recorded: nothing to compare
        expected["data_files"] = info["data_files"]
    actual = {**{k: manifest[k] for k in expected if k != "kinds"}, "kinds": sorted(manifest["kinds"])}
    differ = [k for k in expected if expected[k] != actual[k]]
    if differ:
        raise UsageError(f"{path}: already holds a finalized dataset with different {', '.join(differ)}; "
                         "refusing to overwrite it")
    return manifest


def finished_example_ids(path: Path, manifest: dict[str, Any]) -> set[str]:
    from latentbench.store.integrity import verify_file
    from latentbench.store.parquet import read_parquet

    ids: set[str] = set()
    for table in manifest["tables"].values():
        for rel in table["files"]:
            ids.update(read_parquet(verify_file(path, rel, manifest["files"]))["example_id"].to_list())
    return ids


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _fsync_tree(root: Path) -> None:
    for dirpath, _, names in os.walk(root):
        for name in names:
            fd = os.open(Path(dirpath) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))
