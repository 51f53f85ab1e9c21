"""The ``latentbench`` command: a thin typer app; each command calls one library function.

Heavy libraries (torch, transformers, polars, zarr) are imported inside the commands so ``--help``
stays fast. User mistakes raise ``LatentbenchError``: one line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer

from latentbench.errors import LatentbenchError, UsageError
from latentbench.methods.latent_tree_config import LatentTreeConfig

TREE = LatentTreeConfig()  # defaults of `generate --kind latent-tree` come from the config dataclass

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Datasets and benchmarks for latent reasoning.")

ModelOpt = Annotated[str, typer.Option("--model", help="Embedded name (smollm2-135m), Hub id, or local path.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32, bfloat16, float16 or auto.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")]
DataDirOpt = Annotated[str | None, typer.Option(
    "--data-dir", help="Offline benchmark data laid out like shared/data (default: $LATENTBENCH_DATA_DIR, else the Hub).")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N questions.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random choice.")]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Split (default: the task card's).")]


def _parse_kv(pairs: list[str], flag: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {pair!r}: expected key=value")
        out[key] = value
    return out


@app.command("eval")
def eval_cmd(
    task: Annotated[str, typer.Argument(help="Task name (see `latentbench tasks`).")],
    method: Annotated[str, typer.Option("--method", help="Method: cot or latent-mas.")] = "cot",
    split: SplitOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = "smollm2-135m",
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    data_dir: DataDirOpt = None,
    output_path: Annotated[str, typer.Option("--output-path", help="Directory for results JSON (and samples).")] = "results",
    log_samples: Annotated[bool, typer.Option("--log-samples", help="Also write a samples JSONL.")] = False,
    method_arg: Annotated[list[str] | None, typer.Option(
        "--method-arg", help="Method config override key=value (repeatable), e.g. batch_size=4.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Sandbox workers for code tasks.")] = 2,
) -> None:
    """Run METHOD on TASK, score it, and write a results JSON."""
    from latentbench.eval.evaluator import EvalRequest, evaluate

    req = EvalRequest(task=task, method=method, split=split, limit=limit, seed=seed, model=model, dtype=dtype,
                      device=device, data_dir=data_dir, output_path=output_path, log_samples=log_samples,
                      method_args=_parse_kv(method_arg or [], "--method-arg"), workers=workers)
    record, path = evaluate(req)
    metrics = {k: round(v, 4) for k, v in record["metrics"].items() if isinstance(v, float)}
    typer.echo(f"{task} ({record['task']['split']}, n={record['task']['n']}) {method}: {metrics}")
    typer.echo(f"tokens={record['cost']['generated_tokens']} forward_passes={record['cost']['forward_passes']} "
               f"wall={record['cost']['wall_time_s']}s")
    typer.echo(f"results: {path}")


@app.command("generate")
def generate_cmd(
    task: Annotated[str, typer.Argument(help="Task name (see `latentbench tasks`).")],
    kind: Annotated[str, typer.Option("--kind", help="Dataset kind to generate.")] = "latent-tree",
    agents: Annotated[int, typer.Option("--agents", min=1, help="Latent agents (tree depth).")] = TREE.agents,
    branches: Annotated[int, typer.Option("--branches", min=1, help="k: children per node.")] = TREE.branches,
    latent_steps: Annotated[int, typer.Option("--latent-steps", min=0, help="m: latent steps per agent.")] = TREE.latent_steps,
    keep: Annotated[int, typer.Option("--keep", min=1, help="K: leaves decoded and scored.")] = TREE.keep,
    latent_temperature: Annotated[float, typer.Option(
        "--latent-temperature", min=0.0, help="τ of the Gaussian branching noise (0: no branching diversity).")] = TREE.latent_temperature,
    kv_dtype: Annotated[str, typer.Option(
        "--kv-dtype", help="Saved KV dtype: model (exact replay), float32, float16, bfloat16.")] = TREE.kv_dtype,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=0, help="Solver text budget (0: task's).")] = TREE.max_new_tokens,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = "smollm2-135m",
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    data_dir: DataDirOpt = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Dataset dir (default data/TASK-KIND).")] = None,
    num_shards: Annotated[int, typer.Option("--num-shards", min=1, help="Split the questions over N jobs.")] = 1,
    shard_index: Annotated[int, typer.Option("--shard-index", min=0, help="Which of the N shards this job runs.")] = 0,
    version: Annotated[str, typer.Option("--version", help="Dataset version (semver).")] = "0.1.0",
) -> None:
    """Generate (or resume) a dataset of latent-reasoning artifacts for TASK."""
    from latentbench.generate import GenerateRequest, generate

    req = GenerateRequest(task=task, kind=kind, split=split, limit=limit, seed=seed, model=model, dtype=dtype,
                          device=device, data_dir=data_dir, output=output, num_shards=num_shards,
                          shard_index=shard_index, version=version,
                          method_args={"agents": agents, "branches": branches, "latent_steps": latent_steps,
                                       "keep": keep, "latent_temperature": latent_temperature,
                                       "kv_dtype": kv_dtype, "max_new_tokens": max_new_tokens})
    out = generate(req)
    typer.echo(f"dataset: {out}")
    _summarize_tree_dataset(out)


def _summarize_tree_dataset(path) -> None:
    from latentbench.store import open_dataset

    ds = open_dataset(path)
    trees, nodes = ds.table("trees"), ds.table("nodes")
    leaves = int(trees["n_leaves"].sum())
    correct = int(trees["n_correct"].sum())
    typer.echo(f"trees={trees.height} nodes={nodes.height} decoded_leaves={leaves} correct_leaves={correct} "
               f"share_correct={correct / max(leaves, 1):.3f} "
               f"majority_accuracy={trees['correct'].mean() if trees.height else 0:.3f}")


@app.command("replay")
def replay_cmd(
    dataset: Annotated[str, typer.Argument(help="Latent-tree dataset directory.")],
    node: Annotated[int, typer.Option("--node", min=0, help="Node id within its tree (the root is 0).")],
    example: Annotated[str | None, typer.Option("--example", help="Example id (needed when the dataset has several trees).")] = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Rebuild a node's path cache from its KV shards and decode from it."""
    from latentbench.replay import replay

    result = replay(dataset, example, node, device=device)
    typer.echo(f"{result.example_id} node {result.node_id} path {result.path} ({result.positions} cached positions)")
    typer.echo(result.text)
    if result.matches is not None:
        typer.echo(f"matches saved text: {result.matches}")
        if not result.matches:
            raise typer.Exit(1)


@app.command("tasks")
def tasks_cmd() -> None:
    """List the registered tasks."""
    from latentbench.tasks import get_task, task_names

    for name in task_names():
        info = get_task(name).describe()
        typer.echo(f"{name:<10} {info['answer_kind']:<7} splits={','.join(info['splits'])} "
                   f"(default {info['default_split']})  {info['license']}  {info['description']}")


@app.command("env")
def env_cmd() -> None:
    """Versions and platform, for bug reports."""
    from latentbench import provenance

    typer.echo(json.dumps(provenance.environment(), indent=2))


def _register_subcommands() -> None:
    """Commands that live beside their library code register themselves on the app."""
    from latentbench.store.commands import register as register_store

    register_store(app)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    _register_subcommands()
    try:
        app()  # standalone: click prints usage errors itself and exits 2
    except LatentbenchError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
