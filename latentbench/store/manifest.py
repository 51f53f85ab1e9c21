"""``manifest.json`` (provenance, counts, sha256 of every file) and the ``README.md`` dataset card.

The card's YAML header maps each table to its Parquet files (``configs:``), so a plain
``datasets.load_dataset(dir, "<table>")`` works with no custom code, locally and on the Hub.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from latentbench.errors import DatasetIntegrityError, SchemaError, UsageError
from latentbench.provenance import sha256_file
from latentbench.store.schema import KindSpec, available_kinds, load_schema

MANIFEST = "manifest.json"
TABLES = "tables"  # Parquet tables, one folder per table
ARRAYS = "arrays.zarr"  # the Zarr group of arrays
CARD = "README.md"
SEMVER = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]


def list_files(root: Path) -> list[str]:
    """Every file under ``root`` except the manifest, as sorted POSIX paths relative to root."""
    out = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def file_table(root: Path, rels: list[str] | None = None,
               known: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """sha256 and size of ``rels`` (default: every file but the manifest). ``known``: entries hashed as
    they were written (the array shards), used while the file still has that size, not hashed again."""
    known = known or {}
    out = {}
    for rel in list_files(root) if rels is None else rels:
        size = (root / rel).stat().st_size
        entry = known.get(rel)
        out[rel] = dict(entry) if entry and entry["bytes"] == size else {"sha256": sha256_file(root / rel),
                                                                       "bytes": size}
    return out


def created_now() -> str:
    """UTC timestamp of this run; SOURCE_DATE_EPOCH (the reproducible-builds convention) wins if set."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def size_category(n: int) -> str:
    return next((label for limit, label in _SIZES if n < limit), "n>1B")


def manifest_problems(manifest: Any) -> list[str]:
    """Schema problems of a parsed manifest, plus unknown kinds and unsupported schema versions."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(
        load_schema("manifest", 1), format_checker=jsonschema.FormatChecker()
    )
    problems = []
    for err in sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path)):
        loc = "/".join(str(p) for p in err.absolute_path)
        problems.append(f"{loc or '(root)'}: {err.message}")
    if not isinstance(manifest, dict):
        return problems
    known = available_kinds()
    kinds = manifest.get("kinds") if isinstance(manifest.get("kinds"), dict) else {}
    main = manifest.get("kind")
    if isinstance(main, str) and main not in kinds:
        problems.append(f"kind: main kind {main!r} is missing from 'kinds'")
    for kind, version in kinds.items():
        if kind not in known:
            problems.append(f"kinds: unknown dataset kind {kind!r} (known: {', '.join(sorted(known))})")
        elif isinstance(version, int) and version not in known[kind]:
            problems.append(f"kinds: {kind} schema version {version} is not supported "
                            f"(this latentbench reads {', '.join(f'v{v}' for v in known[kind])})")
    if main in kinds and manifest.get("schema_version") != kinds[main]:
        problems.append(f"schema_version: {manifest.get('schema_version')} differs from kinds[{main!r}]")
    return problems


def read_manifest(root: Path) -> dict[str, Any]:
    """Parse and check ``root/manifest.json``; DatasetIntegrityError naming the file otherwise."""
    path = root / MANIFEST
    if not path.is_file():
        raise DatasetIntegrityError(f"{path}: missing (not a latentbench dataset directory)")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetIntegrityError(f"{path}: not valid JSON ({exc})") from None
    problems = manifest_problems(manifest)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DatasetIntegrityError(f"{path}: {problems[0]}{more}")
    return manifest


def check_info(info: dict[str, Any]) -> dict[str, Any]:
    """Normalise the writer's ``info`` (task, split, model, license, version, seed, method_config)."""
    missing = [k for k in ("task", "split", "model", "license", "version") if k not in info]
    if missing:
        raise UsageError(f"dataset info is missing {', '.join(missing)}")
    unknown = set(info) - {"task", "split", "model", "license", "version", "seed", "method_config", "data_files"}
    if unknown:
        raise UsageError(f"dataset info has unknown keys {sorted(unknown)}")
    model = info["model"] if isinstance(info["model"], dict) else {"id": info["model"]}
    out = {**info, "model": {"revision": None, "sha256": None, **model},
           "seed": info.get("seed"), "method_config": info.get("method_config", {}),
           "data_files": info.get("data_files", []), "license": str(info["license"]).lower()}
    try:
        out = json.loads(json.dumps(out, sort_keys=True))  # what the manifest will hold, exactly
    except TypeError as exc:
        raise UsageError(f"dataset info must be JSON-serialisable: {exc}") from None
    import jsonschema

    props = load_schema("manifest", 1)["properties"]
    sub = {"type": "object", "properties": {k: props[k] for k in out}}
    error = next(iter(jsonschema.Draft202012Validator(sub).iter_errors(out)), None)
    if error is not None:
        loc = "/".join(str(p) for p in error.absolute_path)
        raise UsageError(f"dataset info {loc}: {error.message}")
    return out


def build_manifest(*, kind: str, specs: list[KindSpec], info: dict[str, Any], counts: dict[str, Any],
                   tables: dict[str, Any], arrays: dict[str, Any], files: dict[str, Any],
                   created: str, git: str | None, packages: dict[str, str]) -> dict[str, Any]:
    kinds = {s.kind: s.version for s in specs}
    manifest = {
        "format": "latentbench-dataset", "manifest_version": 1,
        "kind": kind, "schema_version": kinds[kind], "kinds": kinds,
        "version": info["version"], "task": info["task"], "split": info["split"], "model": info["model"],
        "method_config": info["method_config"], "data_files": info["data_files"], "seed": info["seed"],
        "license": info["license"],
        "packages": packages, "git_sha": git, "counts": counts,
        "tables": tables, "arrays": arrays, "files": files, "created": created,
    }
    problems = manifest_problems(manifest)
    if problems:
        raise SchemaError(f"{MANIFEST}: {problems[0]}")
    return manifest


# Hub task categories per answer kind (huggingface.co/tasks): what the generated data can train or test.
_TASK_CATEGORIES = {"number": ["question-answering", "text-generation"],
                    "choice": ["multiple-choice", "question-answering"], "code": ["text-generation"]}


def card_metadata(task: str) -> dict[str, list[str]]:
    """``language``, ``task_categories`` and ``source_datasets`` for the card, from ``tasks/<task>.yaml``; a
    task without a card (synthetic data) is an original English text-generation dataset."""
    from latentbench.paths import TASKS_DIR
    from latentbench.tasks.card import TaskCard

    path = TASKS_DIR / f"{task}.yaml"
    if not path.is_file():
        return {"language": ["en"], "task_categories": ["text-generation"], "source_datasets": ["original"]}
    card = TaskCard.from_yaml(path)
    source = (card.source.get("hub") or {}).get("id") or card.name  # the Hub id where the benchmark has one
    return {"language": ["en", "code"] if card.answer_kind == "code" else ["en"],
            "task_categories": _TASK_CATEGORIES[card.answer_kind], "source_datasets": [f"extended|{source}"]}


def render_card(manifest: dict[str, Any], specs: list[KindSpec]) -> str:
    """README.md, built with huggingface_hub's DatasetCard: the Hub's YAML header (configs -> parquet
    files, license, language, task categories, source datasets, tags, size) and a short body."""
    from huggingface_hub import DatasetCard, DatasetCardData

    # datasets.load_dataset refuses a split with no rows, so empty tables get no config.
    filled = [name for name, table in manifest["tables"].items() if table["rows"]]
    main_tables = [t for s in specs if s.kind == manifest["kind"] for t in s.tables]
    default = next((t for t in main_tables if t in filled), filled[0] if filled else None)
    configs = []
    for name in filled:
        entry: dict[str, Any] = {"config_name": name, "data_files": [
            {"split": manifest["split"], "path": manifest["tables"][name]["files"]}]}
        if name == default:
            entry["default"] = True
        configs.append(entry)
    rows = max(manifest["counts"]["tables"].values(), default=0)
    pretty_name = f"{manifest['task']} {manifest['kind']} ({manifest['model']['id']})"
    data = DatasetCardData(
        license=manifest["license"], pretty_name=pretty_name, **card_metadata(manifest["task"]),
        size_categories=[size_category(rows)], tags=["latentbench", "latent-reasoning", *manifest["kinds"]],
        configs=configs,
    )
    lines = [f"# {pretty_name}", "",
             f"A latentbench `{manifest['kind']}` dataset, version {manifest['version']}: "
             f"{manifest['counts']['examples']} examples of `{manifest['task']}` ({manifest['split']}), "
             f"generated with `{manifest['model']['id']}` (seed {manifest['seed']}).", "",
             "```python",
             "from datasets import load_dataset",
             f"ds = load_dataset(\"<this repo or dir>\", \"{default}\")" if default else "# (no rows yet)",
             "",
             "# tables as polars frames, tensors read lazily from arrays.zarr/:",
             "from latentbench.store import open_dataset",
             "ds = open_dataset(\"<this dir, or owner/name@v" + manifest["version"] + ">\")",
             *([f"x = ds.array(\"{next(iter(manifest['arrays']))}\", 0)"] if manifest["arrays"] else []),
             "```", ""]
    for spec in specs:
        for name, table in spec.tables.items():
            lines += [f"## Table `{name}` ({spec.kind}, {manifest['counts']['tables'].get(name, 0)} rows)",
                      "", table.row_schema.get("description", ""), "",
                      "| column | type | unit | description |", "|---|---|---|---|"]
            for col, cs in table.columns.items():
                types = [cs["type"]] if isinstance(cs["type"], str) else cs["type"]
                kind = " or ".join(types)
                lines.append(f"| `{col}` | {kind} | {cs['unit']} | {cs['description'].replace('|', '/')} |")
            lines.append("")
    for name, arr in manifest["arrays"].items():
        lines += [f"## Array `{name}` ({arr['kind']}, {arr['items']} tensors, {arr['dtype']})", "",
                  f"Stored in `arrays.zarr/{name}/` as a flat `data` array ({arr['codec']}, "
                  f"{arr['chunk_elements']} elements per chunk"
                  + (f", {arr['shard_elements']} per shard file" if "shard_elements" in arr else "")
                  + ") with `offsets` and `shapes`.", ""]
    tables = [(rel, f) for rel, f in manifest["files"].items() if rel.startswith("tables/")]
    more = len(manifest["files"]) - len(tables)
    if tables:
        lines += ["## Files", "",
                  "The Parquet files `datasets.load_dataset` reads, with their sha256. `manifest.json` lists "
                  "every file's sha256" + (f" (the {more} under `arrays.zarr/` too)" if more else "") +
                  "; `latentbench verify <dir>` checks them all, and latentbench's own readers check each "
                  "file before using it.", "", "| file | bytes | sha256 |", "|---|---|---|",
                  *[f"| `{rel}` | {f['bytes']} | `{f['sha256']}` |" for rel, f in tables], ""]
    lines += ["## Provenance", "", "```json",
              json.dumps({k: manifest[k] for k in ("model", "data_files", "method_config", "packages", "git_sha",
                                                   "created")}, indent=2, sort_keys=True), "```", ""]
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))
