"""``latentbench methods [NAME]``: the registered methods, or one method's config fields."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from latentbench.config import config_fields
from latentbench.methods import METHODS, TRAINERS, load_entry, method_class, trainer_class


def methods_cmd(name: Annotated[str | None, typer.Argument(
        help="A method or a trainer (`latentbench train NAME`): print its config fields.")] = None) -> None:
    """List the registered methods and trainers, or every config field of one (flag, type, default, help)."""
    if name is None:
        rows = [(method, _kinds(method_class(method)), _summary(method_class(method))) for method in METHODS]
        width = [max(len(r[i]) for r in rows) for i in range(2)]
        for name_, kinds, summary in rows:
            typer.echo(f"{name_:<{width[0]}}  {kinds:<{width[1]}}  {summary}")
        typer.echo(f"trainers (latentbench train NAME): {', '.join(TRAINERS) or '-'}")
        return
    if name in TRAINERS and name not in METHODS:
        trainer = trainer_class(name)
        typer.echo(f"train {name}: {_summary(trainer)}")
        typer.echo(f"config: {trainer.config_class.__module__}:{trainer.config_class.__name__}")
        _print_fields(trainer.config_class)
        return
    cls = method_class(name)
    trainers = [t for t, spec in TRAINERS.items() if getattr(load_entry(spec), "method", None) == name]
    typer.echo(f"{name}: {_summary(cls)}")
    typer.echo(f"config: {cls.config_class.__module__}:{cls.config_class.__name__}")
    typer.echo(_kinds(cls))
    typer.echo(f"trainers: {', '.join(trainers) or '-'}")
    _print_fields(cls.config_class)


def _print_fields(config_class: type) -> None:
    typer.echo("fields (as --flag VALUE, --method-arg name=VALUE, or a key of --config FILE.yaml):")
    rows = [(f.flag, f.type_name, _default(f.default), f.help) for f in config_fields(config_class)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        typer.echo("  " + "  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3])


def _summary(cls: type) -> str:
    return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


def _kinds(cls: Any) -> str:
    kinds = getattr(cls, "dataset_kinds", {})
    if not kinds:
        return "writes: -"
    return "writes: " + ", ".join(k + (f" (+{'+'.join(x)})" if x else "") for k, x in kinds.items())


def _default(value: Any) -> str:
    text = json.dumps(value, default=str) if isinstance(value, dict | list | tuple) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def register(app: typer.Typer) -> None:
    app.command("methods")(methods_cmd)
