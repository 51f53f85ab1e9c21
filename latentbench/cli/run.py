"""``eval``, ``generate`` and ``train``: the commands that run a registered method or trainer."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from latentbench.cli.options import (
    CONFIG_FLAGS,
    METHOD_HELP,
    AllowModifiedOpt,
    ConfigOpt,
    DataDirOpt,
    DeviceOpt,
    DtypeOpt,
    LimitOpt,
    MethodArgOpt,
    ModelOpt,
    QuietOpt,
    SeedOpt,
    SplitOpt,
    config_values,
)
from latentbench.methods import TRAINERS, method_class, trainer_class
from latentbench.models.loading import DEFAULT_MODEL
from latentbench.progress import set_quiet


def eval_cmd(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="Task name (see `latentbench tasks`).")],
    method: Annotated[str, typer.Option("--method", help=METHOD_HELP)] = "cot",
    split: SplitOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = DEFAULT_MODEL,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    data_dir: DataDirOpt = None,
    allow_modified_data: AllowModifiedOpt = False,
    output_path: Annotated[str, typer.Option("--output-path", help="Directory for results JSON (and samples).")] = "results",
    log_samples: Annotated[bool, typer.Option(
        "--log-samples/--no-log-samples", help="Keep the per-question samples JSONL (also what an interrupted run resumes from).")] = True,
    method_arg: MethodArgOpt = None,
    config: ConfigOpt = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Sandbox workers for code tasks.")] = 2,
    unsafe_no_sandbox: Annotated[bool, typer.Option(
        "--unsafe-no-sandbox", help="Code tasks without bubblewrap: run model-written code with resource limits "
        "only (no filesystem isolation) instead of refusing.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Run METHOD on TASK, score it, and write a results JSON; re-running the same command resumes it.

    On a terminal a progress bar shows questions done, the running accuracy and tokens/s."""
    from latentbench.eval.evaluator import EvalRequest, evaluate

    set_quiet(quiet)

    values, sources = config_values(method_class(method).config_class, ctx.args, method_arg, config, f"--method {method}")
    req = EvalRequest(task=task, method=method, split=split, limit=limit, seed=seed, model=model, dtype=dtype,
                      device=device, data_dir=data_dir, allow_modified_data=allow_modified_data,
                      output_path=output_path, log_samples=log_samples,
                      method_args=values, method_sources=sources, workers=workers,
                      unsafe_no_sandbox=unsafe_no_sandbox, command=["latentbench", *sys.argv[1:]],
                      show_progress=not quiet)
    record, path = evaluate(req)
    metrics = {k: round(v, 4) for k, v in {**record["metrics"], **record["method_metrics"]}.items()
               if isinstance(v, float)}
    typer.echo(f"{task} ({record['task']['split']}, n={record['task']['n']}) {method}: {metrics}")
    cost = record["cost"]
    typer.echo(f"tokens={cost['generated_tokens']} truncated={cost.get('truncated_outputs')} "
               f"forward_passes={cost['forward_passes']} wall={cost['wall_time_s']}s")
    typer.echo(f"results: {path}")


def generate_cmd(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="Task name (see `latentbench tasks`).")],
    method: Annotated[str, typer.Option("--method", help=METHOD_HELP)] = "latent-tree",
    kind: Annotated[str | None, typer.Option("--kind", help="Dataset kind, where the method writes several.")] = None,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = DEFAULT_MODEL,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    data_dir: DataDirOpt = None,
    allow_modified_data: AllowModifiedOpt = False,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Dataset dir (default data/TASK-KIND).")] = None,
    num_shards: Annotated[int, typer.Option("--num-shards", min=1, help="Split the questions over N jobs.")] = 1,
    shard_index: Annotated[int, typer.Option("--shard-index", min=0, help="Which of the N shards this job runs.")] = 0,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip the first N questions (--limit counts from "
                                        "there): extend a dataset of the first questions with the next ones.")] = 0,
    version: Annotated[str, typer.Option("--version", help="Dataset version (semver).")] = "0.1.0",
    method_arg: MethodArgOpt = None,
    config: ConfigOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Generate (or resume) a dataset of METHOD's artifacts for TASK.

    On a terminal a progress bar shows questions done, the running accuracy (text tasks) and tokens/s."""
    from latentbench.generate import GenerateRequest, generate

    set_quiet(quiet)

    values, sources = config_values(method_class(method).config_class, ctx.args, method_arg, config, f"--method {method}")
    req = GenerateRequest(task=task, method=method, kind=kind, split=split, limit=limit, seed=seed, model=model,
                          dtype=dtype, device=device, data_dir=data_dir, allow_modified_data=allow_modified_data,
                          output=output, num_shards=num_shards, shard_index=shard_index, offset=offset,
                          version=version, method_args=values, method_sources=sources, show_progress=not quiet)
    out = generate(req)
    typer.echo(f"dataset: {out}")
    summarize = getattr(method_class(method), "summarize", None)
    if summarize is not None:
        from latentbench.store import open_dataset

        typer.echo(summarize(open_dataset(out)))


def train_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help=f"Trainer: {', '.join(TRAINERS) or 'none registered yet'}.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Checkpoint directory (resumed if it holds one).")],
    datasets: Annotated[list[str] | None, typer.Argument(
        help="Dataset directories to train on (none for trainers that roll out on a task: gcache --task).")] = None,
    method_arg: MethodArgOpt = None,
    config: ConfigOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train NAME on DATASET… into --output; its config fields are flags (--max-steps, --seed, --limit, …):
    `latentbench methods NAME` lists them.

    On a terminal a progress bar shows steps done, the latest loss and steps/s."""
    from latentbench.train import run_training

    set_quiet(quiet)

    datasets = datasets or []
    cut = next((i for i, d in enumerate(datasets) if d.startswith("--")), len(datasets))
    datasets, extra = datasets[:cut], [*datasets[cut:], *ctx.args]
    cls = trainer_class(name)
    values, sources = config_values(cls.config_class, extra, method_arg, config, f"train {name}")
    from latentbench.methods.base import make_config

    trainer = cls(make_config(cls.config_class, values, sources))
    result = run_training(trainer, datasets, output, show_progress=not quiet)
    typer.echo(f"checkpoint: {result.output} (step {result.steps})")


def register(app: typer.Typer) -> None:
    app.command("eval", context_settings=CONFIG_FLAGS)(eval_cmd)
    app.command("generate", context_settings=CONFIG_FLAGS)(generate_cmd)
    app.command("train", context_settings=CONFIG_FLAGS)(train_cmd)
