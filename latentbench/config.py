"""Config dataclasses: the one source of a method's or trainer's defaults, types and help.

A config is a plain dataclass whose fields carry their help text (``option(3, "k: children per node")``).
Values from the command line (``--agents 3``, ``--method-arg agents=3``) or a YAML file are parsed by
the field's *annotation* (``int | None``, ``dict[str, str]``, ``list[int]``, ``Literal[...]``), never
guessed from the default. A config's ``__post_init__`` raises ``ConfigError(field, message)``; the CLI
rewrites it to name the flag the user typed. No torch here: ``--help`` must stay fast.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from latentbench.errors import UsageError


class ConfigError(UsageError):
    """A config field holds a value the method cannot use; ``field`` names it (the CLI maps it to a flag)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def option(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None) -> Any:  # noqa: A002
    """A dataclass field with its help text; ``factory`` for mutable defaults (dicts, lists)."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    name: str
    type: Any  # the resolved annotation
    default: Any  # dataclasses.MISSING when required
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def type_name(self) -> str:
        return type_name(self.type)


def config_fields(cls: type) -> list[FieldInfo]:
    """Every init field of a config dataclass with its resolved type, default and help."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        out.append(FieldInfo(f.name, hints[f.name], default, f.metadata.get("help", "")))
    return out


def type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "|".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


def parse_value(tp: Any, raw: Any) -> Any:
    """``raw`` (a CLI string, or an already-typed YAML value) as an instance of annotation ``tp``.
    Raises ``ValueError`` naming what was expected."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (raw is None or (isinstance(raw, str) and raw.strip().lower() in ("none", "null", ""))):
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return parse_value(arg, raw)
            except ValueError:
                continue
        raise ValueError(f"expected {type_name(tp)}")
    if origin is Literal:
        for choice in args:
            if raw == choice or str(raw) == str(choice):
                return choice
        raise ValueError(f"expected one of {', '.join(str(a) for a in args)}")
    if origin in (dict, list, tuple):
        value = _structured(raw, origin)
        if origin is dict:
            key_t, val_t = args or (str, Any)
            return {parse_value(key_t, k): parse_value(val_t, v) for k, v in value.items()}
        item_t = args[0] if args else Any
        items = [parse_value(item_t, v) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return raw
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if tp in (int, float, str):
        if tp is not str and isinstance(raw, bool):
            raise ValueError(f"expected {tp.__name__}")
        if tp is int and isinstance(raw, float) and not raw.is_integer():
            raise ValueError("expected int")
        try:
            return tp(raw)
        except (TypeError, ValueError):
            raise ValueError(f"expected {tp.__name__}") from None
    raise ValueError(f"unsupported field type {type_name(tp)}")


def _structured(raw: Any, origin: type) -> Any:
    """A dict or list given as YAML/JSON text (``{a: 1}``, ``[1, 2]``) or, for lists, ``a,b,c``."""
    import yaml

    value = raw
    if isinstance(raw, str):
        try:
            value = yaml.safe_load(raw) if raw.strip() else ({} if origin is dict else [])
        except yaml.YAMLError:
            raise ValueError(f"expected a {origin.__name__} in YAML/JSON") from None
        if origin is not dict and not isinstance(value, list):
            value = [part.strip() for part in raw.split(",") if part.strip()]
    if origin is dict and not isinstance(value, dict):
        raise ValueError("expected a mapping, e.g. {key: value}")
    if origin is not dict and not isinstance(value, list | tuple):
        raise ValueError("expected a list, e.g. a,b or [a, b]")
    return value


def build_config(cls: type, values: dict[str, Any], sources: dict[str, str] | None = None) -> Any:
    """A config from raw values keyed by field name; ``sources[name]`` is how the user wrote it (a flag,
    ``--method-arg k=v`` or ``FILE.yaml: k``), used in errors. Unknown names and bad values raise
    ``UsageError`` naming that source; the config's own checks (``ConfigError``) are re-worded the same way."""
    fields = {f.name: f for f in config_fields(cls)}
    sources = sources or {}
    typed: dict[str, Any] = {}
    for name, raw in values.items():
        where = sources.get(name, name)
        if name not in fields:
            raise UsageError(f"{where}: unknown option; {cls.__name__} has {', '.join(fields)}")
        try:
            typed[name] = parse_value(fields[name].type, raw)
        except ValueError as err:
            raise UsageError(f"{where}={_short(raw)}: {err}") from None
    try:
        return cls(**typed)
    except ConfigError as err:
        raise UsageError(f"{sources.get(err.field, err.field)}: {err.message}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML (or JSON) config file, field name -> value."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as err:
        raise UsageError(f"--config {p}: cannot read ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise UsageError(f"--config {p}: not valid YAML ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--config {p}: expected a mapping of config fields, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def config_dict(config: Any) -> dict[str, Any]:
    """The config as JSON-ready values (what results and manifests record)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def _short(raw: Any) -> str:
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
