"""The ``latentbench`` command: a thin typer app; each command calls one library function.

Heavy libraries (torch, transformers, polars, zarr) are imported inside the commands so ``--help``
stays fast. User mistakes raise ``LatentbenchError``: one line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings

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


class _Stderr:
    """sys.stderr looked up at each write: while a progress bar is drawn, rich swaps in a proxy that
    prints above the bar, and log lines must go through it rather than into the bar."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def quiet_library_warnings() -> None:
    """Deprecation notices of torch, transformers, zarr, … are for their callers, not for our users (our
    own warnings, e.g. the sandbox's, are UserWarnings and still show). ``-W`` / ``PYTHONWARNINGS`` win."""
    if sys.warnoptions:
        return
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=_Stderr())
    quiet_library_warnings()
    try:
        app()  # standalone: click prints usage errors itself and exits 2
    except LatentbenchError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
