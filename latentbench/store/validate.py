"""Full dataset check: manifest schema, file hashes, every table row, array layout, every reference.

``validate_dataset(dir)`` returns one line per problem, each naming the file and what is wrong;
an empty list means the dataset is valid. Nothing is modified.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from latentbench.errors import LatentbenchError
from latentbench.store.integrity import file_problem
from latentbench.store.manifest import ARRAYS, MANIFEST, list_files, manifest_problems
from latentbench.store.parquet import read_parquet
from latentbench.store.schema import KindSpec, TableSpec, check_frame, load_kind

_MAX_LISTED = 3  # missing files of one table/array listed one by one before being summarised


def validate_dataset(path: str | Path) -> list[str]:
    root = Path(path)
    if not root.is_dir():
        return [f"{root}: no such dataset directory"]
    mpath = root / MANIFEST
    if not mpath.is_file():
        return [f"{mpath}: missing (not a latentbench dataset directory)"]
    try:
        manifest = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        return [f"{mpath}: not valid JSON ({exc})"]
    problems = [f"{mpath}: {p}" for p in manifest_problems(manifest)]
    if problems:  # without a trustworthy manifest nothing else can be checked
        return problems
    specs = [load_kind(k, v) for k, v in manifest["kinds"].items()]
    bad: set[str] = set()  # failed their hash (or missing): never parsed, their bytes could panic a reader
    problems += check_files(root, manifest, bad=bad)
    items = _check_arrays(root, manifest, specs, problems)
    frames = _check_tables(root, manifest, specs, problems, bad)
    _check_refs(root, manifest, specs, frames, items, problems)
    return problems


def check_files(root: Path, manifest: dict[str, Any], *, hash_only: set[str] | None = None,
                ignore: tuple[str, ...] = (), bad: set[str] | None = None) -> list[str]:
    """Every listed file present with its size and sha256 (only ``hash_only`` hashed, if given), and no
    unlisted file (paths starting with one of ``ignore`` aside); one line per problem. Listed files
    that are missing or differ are added to ``bad``."""
    problems: list[str] = []
    listed = manifest["files"]
    present = {rel for rel in list_files(root) if not rel.startswith(ignore)}
    missing: dict[str, list[str]] = defaultdict(list)
    bad = set() if bad is None else bad
    for rel in sorted(set(listed) - present):
        missing["/".join(rel.split("/")[:2])].append(rel)
        bad.add(rel)
    for group, rels in missing.items():
        if len(rels) > _MAX_LISTED:
            problems.append(f"{root / group}: {len(rels)} files listed in manifest.json are missing")
        else:
            problems += [f"{root / rel}: missing (listed in manifest.json)" for rel in rels]
    for rel in sorted(present - set(listed)):
        problems.append(f"{root / rel}: not listed in manifest.json")
    for rel in sorted(present & set(listed)):
        problem = file_problem(root, rel, listed[rel], hash_it=hash_only is None or rel in hash_only)
        if problem:
            problems.append(problem)
            bad.add(rel)
    return problems


def _check_tables(root: Path, manifest: dict[str, Any], specs: list[KindSpec],
                  problems: list[str], bad: set[str]) -> dict[str, Any]:
    import polars as pl

    frames = {}
    declared = {name: t for s in specs for name, t in s.tables.items()}
    for name in declared.keys() - manifest["tables"].keys():
        problems.append(f"{root / MANIFEST}: table {name!r} of kind {declared[name].kind} is not listed")
    for name, meta in manifest["tables"].items():
        spec = declared.get(name)
        if spec is None:
            problems.append(f"{root / MANIFEST}: table {name!r} belongs to none of the kinds {list(manifest['kinds'])}")
            continue
        parts = []
        for rel in meta["files"]:
            if rel in bad:
                continue
            try:
                frame = read_parquet(root / rel)
            except LatentbenchError as exc:
                problems.append(str(exc))
                continue
            problems += [f"{root / rel}: {p}" for p in check_frame(spec, frame)]
            parts.append(frame)
        if len(parts) != len(meta["files"]) or not parts:
            continue
        where = root / meta["files"][0]
        try:
            frame = pl.concat(parts)
        except pl.exceptions.PolarsError as exc:
            problems.append(f"{where}: files of table {name!r} do not concatenate ({exc})")
            continue
        if len(frame) != meta["rows"]:
            problems.append(f"{where}: table {name!r} has {len(frame)} rows, manifest.json says {meta['rows']}")
        problems += _key_problems(where, spec, frame)
        frames[name] = frame
    return frames


def _key_problems(where: Path, spec: TableSpec, frame: Any) -> list[str]:
    key = [k for k in spec.key if k in frame.columns]
    if len(key) != len(spec.key):
        return []
    keys = frame.select(key)
    if keys.is_duplicated().any():
        return [f"{where}: duplicate key {list(spec.key)} values"]
    if not keys.equals(keys.sort(key, maintain_order=True)):
        return [f"{where}: rows are not sorted by key {list(spec.key)}"]
    return []


def _check_arrays(root: Path, manifest: dict[str, Any], specs: list[KindSpec],
                  problems: list[str]) -> dict[str, tuple[int, np.ndarray | None]]:
    """Checks layout of every array; returns name -> (items, shapes) for the reference checks."""
    import zarr

    declared = {name: a for s in specs for name, a in s.arrays.items()}
    out: dict[str, tuple[int, np.ndarray | None]] = {}
    if not manifest["arrays"]:
        return out
    base = root / ARRAYS
    try:
        group = zarr.open_group(base, mode="r")
    except Exception as exc:  # zarr raises several unrelated types for a missing/corrupt group
        problems.append(f"{base}: missing or unreadable Zarr group ({type(exc).__name__})")
        return out
    for name in sorted(set(group.group_keys()) - set(manifest["arrays"])):
        problems.append(f"{base / name}: Zarr array not listed in manifest.json")
    for name, meta in manifest["arrays"].items():
        where = base / name
        if name not in declared:
            problems.append(f"{root / MANIFEST}: array {name!r} belongs to none of the kinds {list(manifest['kinds'])}")
            continue
        if meta["dtype"] not in declared[name].dtypes or meta["ndim"] != declared[name].ndim:
            problems.append(f"{root / MANIFEST}: array {name!r} is {meta['dtype']}/{meta['ndim']}-d, schema "
                            f"wants {'/'.join(declared[name].dtypes)} and {declared[name].ndim}-d")
        try:
            sub = group[name]
            data, offsets, shapes = sub["data"], sub["offsets"][:], sub["shapes"][:]
        except Exception as exc:  # missing node (KeyError) or an unreadable chunk (codec errors)
            problems.append(f"{where}: missing or unreadable Zarr array ({type(exc).__name__}: {exc})")
            continue
        before = len(problems)
        if sub.attrs.get("dtype") != meta["dtype"]:
            problems.append(f"{where}: dtype attribute {sub.attrs.get('dtype')!r}, manifest.json says {meta['dtype']!r}")
        if len(offsets) != meta["items"] + 1 or shapes.shape != (meta["items"], meta["ndim"]):
            problems.append(f"{where}: {len(offsets) - 1} offsets / {shapes.shape[0]} shapes, "
                            f"manifest.json says {meta['items']} items")
        elif len(offsets) and offsets[0] != 0:
            problems.append(f"{where}/offsets: first offset is {offsets[0]}, expected 0")
        elif (np.diff(offsets) < 0).any():
            problems.append(f"{where}/offsets: not monotone at item {int(np.argmax(np.diff(offsets) < 0))}")
        elif offsets[-1] != data.shape[0] or data.shape[0] != meta["elements"]:
            problems.append(f"{where}/data: {data.shape[0]} elements, offsets end at {offsets[-1]}, "
                            f"manifest.json says {meta['elements']}")
        else:
            sizes = shapes.prod(axis=1) if len(shapes) else np.zeros(0, dtype=np.int64)
            bad = np.nonzero(sizes != np.diff(offsets))[0]
            if len(bad):
                problems.append(f"{where}/shapes: item {int(bad[0])} has shape {shapes[bad[0]].tolist()} but "
                                f"offsets span {int(np.diff(offsets)[bad[0]])} elements")
        out[name] = (meta["items"], shapes if len(problems) == before else None)
    return out


def _check_refs(root: Path, manifest: dict[str, Any], specs: list[KindSpec], frames: dict[str, Any],
                items: dict[str, tuple[int, np.ndarray | None]], problems: list[str]) -> None:
    """Every ``x-array`` column points at an existing item; index tables describe every item exactly."""
    declared_arrays = {name: a for s in specs for name, a in s.arrays.items()}
    for s in specs:
        for table, spec in s.tables.items():
            if table not in frames:
                continue
            where = root / manifest["tables"][table]["files"][0]
            frame = frames[table]
            for column, array in spec.array_columns().items():
                values = frame.get_column(column).drop_nulls()
                n = items.get(array, (manifest["counts"]["arrays"].get(array, 0), None))[0]
                if len(values) and (values.min() < 0 or values.max() >= n):
                    bad = values.filter((values < 0) | (values >= n))[0]
                    problems.append(f"{where}: column {column!r} has value {bad}, array {array!r} has {n} items")
    for name, arr in declared_arrays.items():
        table = arr.index_table
        if not table or table not in frames or name not in items:
            continue
        where = root / manifest["tables"][table]["files"][0]
        frame = frames[table]
        ref_col = next(c for c, a in _all_tables(specs)[table].array_columns().items() if a == name)
        n, shapes = items[name]
        if frame.get_column(ref_col).to_list() != list(range(n)):
            problems.append(f"{where}: {ref_col} must list every item of array {name!r} once (0..{n - 1})")
        elif shapes is not None and frame.get_column("shape").to_list() != shapes.tolist():
            problems.append(f"{where}: column 'shape' disagrees with {root / ARRAYS / name}/shapes")


def _all_tables(specs: list[KindSpec]) -> dict[str, TableSpec]:
    return {name: t for s in specs for name, t in s.tables.items()}
