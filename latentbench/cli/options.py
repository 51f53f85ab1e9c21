"""Options shared by several commands, and how method/trainer config flags are read.

A method's or trainer's options are not declared one by one: any field of its config dataclass is
accepted as ``--field-name VALUE`` (after the positional arguments), as ``--method-arg field=value``,
or from ``--config FILE.yaml``; later sources override earlier ones (file, then --method-arg, then
flags). Values are typed by the field's annotation (``latentbench.config``).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from latentbench.config import FieldInfo, config_fields, read_config_file
from latentbench.errors import UsageError
from latentbench.methods import METHODS
from latentbench.models.loading import EMBEDDED

ModelOpt = Annotated[str, typer.Option(
    "--model", help=f"Embedded name ({', '.join(EMBEDDED)}), Hub id owner/name[@revision], or local path.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32, bfloat16, float16 or auto.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")]
DataDirOpt = Annotated[str | None, typer.Option(
    "--data-dir", help="Offline benchmark data laid out like shared/data (default: $LATENTBENCH_DATA_DIR, else the Hub).")]
AllowModifiedOpt = Annotated[bool, typer.Option(
    "--allow-modified-data", help="Use a local data file whose sha256 differs from its task card's pin (recorded; "
    "such results are not leaderboard-eligible).")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N questions.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="The run's seed: torch and every config's seed field.")]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Split (default: the task card's).")]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress bar (there is none anyway when stderr is not a terminal).")]
MethodArgOpt = Annotated[list[str] | None, typer.Option(
    "--method-arg", help="Config field override key=value (repeatable), e.g. batch_size=4.")]
ConfigOpt = Annotated[str | None, typer.Option("--config", help="YAML file of config fields (flags override it).")]

# Commands that take config fields as extra flags.
CONFIG_FLAGS = {"allow_extra_args": True, "ignore_unknown_options": True}
METHOD_HELP = (f"Method: {', '.join(METHODS)}. Its config fields are flags too (--agents 2), or "
               "--method-arg agents=2, or --config FILE.yaml; `latentbench methods NAME` lists them.")


def parse_pairs(pairs: list[str], flag: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {pair!r}: expected key=value")
        out[key] = value
    return out


def config_values(config_class: type, extra: list[str], method_args: list[str] | None,
                  config_file: str | None, owner: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Raw values for ``config_class`` and, per field, how the user wrote it (for error messages)."""
    fields = {f.name: f for f in config_fields(config_class)}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config_file:
        for key, value in read_config_file(config_file).items():
            values[key], sources[key] = value, f"--config {config_file}: {key}"
    for key, value in parse_pairs(method_args or [], "--method-arg").items():
        name = key.replace("-", "_")
        values[name], sources[name] = value, f"--method-arg {key}"
    for name, (flag, value) in _flags(extra, fields, owner).items():
        values[name], sources[name] = value, flag
    return values, sources


def _flags(tokens: list[str], fields: dict[str, FieldInfo], owner: str) -> dict[str, tuple[str, str]]:
    """``--field-name VALUE``, ``--field-name=VALUE``, ``--flag`` / ``--no-flag`` for booleans."""
    out: dict[str, tuple[str, str]] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise UsageError(f"unexpected argument {token!r} (options of {owner} go as --name value)")
        name, eq, value = token[2:].partition("=")
        field = name.replace("-", "_")
        negated = field.startswith("no_") and field[3:] in fields and fields[field[3:]].type is bool
        if field not in fields and not negated:
            flags = ", ".join(f.flag for f in fields.values())
            raise UsageError(f"--{name}: no such option for {owner} (it has {flags})")
        if negated:
            out[field[3:]] = (f"--{name}", "false")
        elif eq:
            out[field] = (f"--{name}", value)
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            out[field] = (f"--{name}", tokens[i + 1])
            i += 1
        elif fields[field].type is bool:
            out[field] = (f"--{name}", "true")
        else:
            raise UsageError(f"--{name}: expected a value ({fields[field].type_name})")
        i += 1
    return out
