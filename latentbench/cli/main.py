"""The ``latentbench`` command: a thin typer app; each command calls one library function.

Heavy libraries (torch, transformers, polars, zarr) are imported inside the commands so ``--help``
stays fast. User mistakes raise ``LatentbenchError``: one line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import json
import logging
import sys

import typer

from latentbench.cli import methods, report, run, store
from latentbench.errors import LatentbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Datasets and benchmarks for latent reasoning.")


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


for module in (run, methods, store, report):
    module.register(app)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        app()  # standalone: click prints usage errors itself and exits 2
    except LatentbenchError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
