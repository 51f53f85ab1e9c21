"""Commands over results records: ``compare`` (two runs, paired on their shared questions),
``leaderboard`` (pages and plots), ``reproduce`` (rerun a record, compare per question).

The work lives in ``latentbench.eval.compare`` / ``leaderboard`` / ``reproduce``, imported inside the
commands so ``latentbench --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def compare_cmd(
    a: Annotated[Path, typer.Argument(help="Results JSON of run A (its samples file beside it).")],
    b: Annotated[Path, typer.Argument(help="Results JSON of run B, same task and split.")],
    variant: Annotated[str | None, typer.Option("--variant", help=(
        "Verdict to compare (strict, flexible, base, plus); default the task's primary one."))] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the paired bootstrap.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full comparison as JSON.")] = False,
) -> None:
    """Accuracy of A and B on their shared questions, B - A with a paired bootstrap 95% interval,
    McNemar's exact test, and the questions where they disagree."""
    from latentbench.eval.compare import compare

    result = compare(a, b, variant=variant, seed=seed)
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.render())


def leaderboard_cmd(
    results: Annotated[list[Path] | None, typer.Argument(
        help="Results JSON files (default: every *.json in leaderboards/results).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory of the pages and plots.")] = Path("leaderboards"),
) -> None:
    """One Markdown page and one plot per task, and an index (README.md), from results records."""
    from latentbench.eval.leaderboard import render

    paths = results or sorted(Path("leaderboards/results").glob("*.json"))
    for path in render(paths, output):
        typer.echo(f"wrote {path}")


def reproduce_cmd(
    results: Annotated[Path, typer.Argument(help="Results JSON to rerun (its samples file beside it).")],
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only its first N questions.")] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir", help="Offline benchmark data (default: "
                                                 "$LATENTBENCH_DATA_DIR).")] = None,
    output_path: Annotated[str | None, typer.Option("--output-path", help="Where the rerun's files go "
                                                    "(default: a new temporary directory).")] = None,
    unsafe_no_sandbox: Annotated[bool, typer.Option(
        "--unsafe-no-sandbox", help="Code tasks without bubblewrap: score with resource limits only (as eval).")] = False,
) -> None:
    """Rerun a results record from its own fields; exit 1 if any prediction differs."""
    from latentbench.eval.reproduce import reproduce

    result = reproduce(results, limit=limit, data_dir=data_dir, output_path=output_path,
                       unsafe_no_sandbox=unsafe_no_sandbox)
    typer.echo(result.render())
    if not result.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
    app.command("leaderboard")(leaderboard_cmd)
    app.command("reproduce")(reproduce_cmd)
