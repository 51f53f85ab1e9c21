"""Commands on saved datasets: ``validate``, ``verify``, ``info``, ``push``, ``pull``, ``replay``,
``select``.

``register(app)`` adds them to the main typer app. Heavy imports happen inside the commands so
``latentbench --help`` stays fast. User errors are raised as LatentbenchError (the CLI prints
``error: <msg>`` and exits 2); ``validate`` prints one line per problem and exits 2 itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def validate(path: Annotated[Path, typer.Argument(help="Dataset directory.")]) -> None:
    """Check a dataset: schemas, file hashes, array layout and every array reference."""
    from latentbench.store.manifest import read_manifest
    from latentbench.store.validate import validate_dataset

    problems = validate_dataset(path)
    for line in problems:
        typer.echo(line)
    if problems:
        raise typer.Exit(code=2)
    m = read_manifest(path)
    typer.echo(f"ok: {path} ({m['kind']} v{m['version']}, {m['counts']['examples']} examples, "
               f"{len(m['files']) + 1} files verified)")


def verify(path: Annotated[Path, typer.Argument(help="Dataset directory (or a downloaded copy of its Hub repo).")]) -> None:
    """Check every file against manifest.json (present, same size and sha256, nothing unlisted): the quick
    integrity check for copies read with datasets.load_dataset; `validate` also checks every row."""
    from latentbench.store.reader import Dataset

    ds = Dataset(path)
    problems = ds.verify()
    for line in problems:
        typer.echo(line)
    if problems:
        raise typer.Exit(code=2)
    typer.echo(f"ok: {path} ({len(ds.manifest['files'])} files match manifest.json)")


def info(spec: Annotated[str, typer.Argument(help="Dataset directory, Hub id owner/name[@revision], or a "
                                                  "`latentbench train` output.")]) -> None:
    """Summarise a dataset from its manifest, or a trained checkpoint from its provenance."""
    from latentbench.errors import DatasetIntegrityError
    from latentbench.store.reader import open_dataset
    from latentbench.train.checkpoint import PROVENANCE, describe

    if (Path(spec) / PROVENANCE).is_file():
        _print_pairs(describe(Path(spec)))
        return

    ds = open_dataset(spec)
    m = ds.manifest
    problems = ds.verify(tables_only=True)  # what it summarises must be what is on disk
    if problems:
        more = f" (+{len(problems) - 1} more; run `latentbench verify {ds.path}`)" if len(problems) > 1 else ""
        raise DatasetIntegrityError(problems[0] + more)
    extra = [k for k in m["kinds"] if k != m["kind"]]
    size = sum(f["bytes"] for f in m["files"].values())
    lines = [
        ("path", str(ds.path)),
        *([("hub", f"{ds.hub_id} at commit {ds.revision}")] if ds.hub_id else []),
        ("kind", f"{m['kind']}" + (f" (+ {', '.join(extra)})" if extra else "") + f", schema v{m['schema_version']}"),
        ("version", m["version"]),
        ("task", f"{m['task']} / {m['split']}"),
        ("model", f"{m['model']['id']}" + (f" (sha256 {m['model']['sha256'][:12]}…)" if m["model"]["sha256"] else "")),
        ("seed", str(m["seed"])),
        ("license", m["license"]),
        ("created", m["created"]),
        ("git", m["git_sha"] or "-"),
        ("examples", str(m["counts"]["examples"])),
    ]
    for name, t in m["tables"].items():
        lines.append((f"table {name}", f"{t['rows']} rows in {len(t['files'])} file(s), key {t['key']}"))
    for name, a in m["arrays"].items():
        on_disk = sum(f["bytes"] for p, f in m["files"].items() if p.startswith(f"arrays.zarr/{name}/"))
        data = sum(p.startswith(f"arrays.zarr/{name}/data/c/") for p in m["files"])
        layout = f"{data} shard file(s)" if "shard_elements" in a else f"{data} chunk file(s)"
        lines.append((f"array {name}", f"{a['items']} tensors, {a['dtype']}, {a['elements']} elements, "
                                       f"{a['codec']}, {layout}, {_size(on_disk)} on disk"))
    lines.append(("size", f"{len(m['files']) + 1} files, {_size(size)}"))
    tables = sum(len(t["files"]) for t in m["tables"].values())
    lines.append(("checked", f"all files present at their sizes, sha256 of the {tables} table file(s) "
                             "(`latentbench verify` hashes every file)"))
    _print_pairs(lines)


def _print_pairs(lines: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        typer.echo(f"{key:<{width}}  {value}")


def push(
    path: Annotated[Path, typer.Argument(help="Dataset directory.")],
    repo_id: Annotated[str, typer.Argument(help="Dataset repo, owner/name.")],
    version: Annotated[str, typer.Option("--version", help="Version X.Y.Z; must match manifest.json.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo as private (refused for an existing public repo).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and list the files; upload nothing.")] = False,
) -> None:
    """Validate, upload to a Hub dataset repo, and tag the commit vX.Y.Z (never reusing a tag)."""
    from latentbench.store import hub

    result = hub.push(path, repo_id, version, private=private, dry_run=dry_run)
    if dry_run:
        for rel, size in result.files:
            typer.echo(f"{size:>12}  {rel}")
        total = sum(size for _, size in result.files)
        typer.echo(f"dry run: would upload {len(result.files)} files ({total} bytes) to dataset repo "
                   f"{repo_id} at {hub.endpoint()} and tag {result.tag}")
        return
    typer.echo(f"pushed {len(result.files)} files to {repo_id}, tagged {result.tag} (commit {result.commit})")
    typer.echo(result.url or "")


def pull(
    spec: Annotated[str, typer.Argument(help="Hub dataset owner/name[@vX.Y.Z].")],
    to: Annotated[Path, typer.Option("--to", help="New (or empty) directory to download into.")],
) -> None:
    """Download a dataset at a revision, validate it, and only then place it at --to."""
    from latentbench.store import hub

    dest = hub.pull(spec, to)
    typer.echo(f"pulled {spec} to {dest} (valid)")


def replay(
    dataset: Annotated[str, typer.Argument(help="Latent-tree dataset directory.")],
    node: Annotated[int, typer.Option("--node", min=0, help="Node id within its tree (the root is 0).")],
    example: Annotated[str | None, typer.Option("--example", help="Example id (needed when the dataset has several trees).")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")] = "cpu",
) -> None:
    """Rebuild a latent-tree node's path cache from its KV shards and decode from it."""
    from latentbench.methods.latent_tree.record import replay as replay_node

    result = replay_node(dataset, example, node, device=device)
    typer.echo(f"{result.example_id} node {result.node_id} path {result.path} ({result.positions} cached positions)")
    typer.echo(result.text)
    if result.matches is not None:
        typer.echo(f"matches saved text: {result.matches}")
        if not result.matches:
            raise typer.Exit(1)


def select(
    datasets: Annotated[list[str], typer.Argument(help="Latent-tree dataset directories (generated with keep all, "
                                                        "or keep >= 2, to have a choice).")],
    prm: Annotated[list[Path] | None, typer.Option("--prm", help="A `latentbench train prm` output (repeatable): "
                                                   "one prm row each.")] = None,
    rules: Annotated[str, typer.Option("--rules", help="Comma-separated: majority, consistency, prm, oracle.")] = "",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the rows (with every pick) as JSON.")] = None,
) -> None:
    """Score latent-tree selection rules offline: which decoded leaf majority, consistency, each PRM and the
    oracle pick in saved trees, and the accuracy of each with a 95% bootstrap interval (no generator run)."""
    import json

    from latentbench.methods.latent_tree.selection import RULES, render, score_rules

    chosen = [r.strip() for r in rules.split(",") if r.strip()] or [r for r in RULES if r != "prm" or prm]
    results = score_rules(datasets, prm or [], chosen)
    typer.echo(render(results))
    if output is not None:
        output.write_text(json.dumps({"datasets": datasets, "rows": [r.to_dict() for r in results]}, indent=2) + "\n")
        typer.echo(f"wrote {output}")


def register(app: typer.Typer) -> None:
    """Add the dataset commands to the main ``latentbench`` app."""
    for command in (validate, verify, info, push, pull, replay, select):
        app.command(command.__name__)(command)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
