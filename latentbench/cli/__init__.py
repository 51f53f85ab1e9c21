"""All command-line code: ``main`` builds the typer app from the command modules beside it."""

from latentbench.cli.main import app, main

__all__ = ["app", "main"]
