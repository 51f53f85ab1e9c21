"""Task cards: one YAML file per task under top-level ``tasks/`` (source, splits, fields, prompt, answer kind)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from latentbench.errors import DataFormatError

AnswerKind = Literal["number", "choice", "code"]
ANSWER_KINDS = ("number", "choice", "code")
REQUIRED = ("name", "license", "answer_kind", "adapter", "default_split", "source", "splits", "fields", "prompt")
# How a split's file is read. None: by its suffix (.zip: a CSV member; otherwise JSON lines, gzipped if
# .gz). "icot": the iCoT/GSM8k-Aug text format, one `question||<<a=b>> <<c=d>> #### answer` per line,
# read into GSM8K-shaped records ({"question", "answer": one step per line, then "#### answer"}).
# "mbpp-train": the original MBPP's JSON lines, only its train part (task_id 601-974), read into
# MBPP+-shaped records (prompt, entry_point, canonical_solution, base_input parsed from the asserts).
SPLIT_FORMATS = ("icot", "mbpp-train")
# A split name is also the split of generated datasets, which `datasets` requires to match this.
SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")


@dataclass(frozen=True)
class SplitSpec:
    file: str  # path relative to the data dir, laid out like ../shared/data
    sha256: str | None = None
    member: str | None = None  # member inside a zip archive
    hub_split: str | None = None  # split name on the Hub (None: not on the Hub)
    format: str | None = None  # None: by the file's suffix; or one of SPLIT_FORMATS
    exclude_split: str | None = None  # drop records whose id is also in this split (never train on scored ones)


@dataclass(frozen=True)
class TaskCard:
    name: str
    description: str
    license: str
    answer_kind: AnswerKind
    adapter: str
    default_split: str
    source: dict[str, Any]
    splits: dict[str, SplitSpec]
    fields: dict[str, Any]
    prompt: str
    max_new_tokens: int = 256
    publish_text: bool = True  # False (GPQA): question text stays out of generated datasets
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def from_yaml(cls, path: Path) -> TaskCard:
        import yaml

        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise DataFormatError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
        if not isinstance(raw, dict):
            raise DataFormatError(f"{path}: expected a mapping of task card fields")
        missing = [k for k in REQUIRED if k not in raw]
        if missing:
            raise DataFormatError(f"{path}: missing field(s) {', '.join(missing)}")
        if raw["answer_kind"] not in ANSWER_KINDS:
            raise DataFormatError(f"{path}: answer_kind {raw['answer_kind']!r} is not one of {ANSWER_KINDS}")
        splits = {}
        keys = {f.name for f in fields(SplitSpec)}
        for name, spec in raw["splits"].items():
            if not isinstance(name, str) or not SPLIT_NAME.match(name):
                raise DataFormatError(f"{path}: split name {name!r} must match {SPLIT_NAME.pattern} "
                                      "(letters, digits, underscores; generated datasets use it as their split)")
            if not isinstance(spec, dict) or "file" not in spec or set(spec) - keys:
                raise DataFormatError(f"{path}: splits.{name} must be a mapping with file and optionally "
                                      f"{', '.join(sorted(keys - {'file'}))}")
            if spec.get("format") is not None and spec["format"] not in SPLIT_FORMATS:
                raise DataFormatError(f"{path}: splits.{name}.format {spec['format']!r} is not one of {SPLIT_FORMATS}")
            if spec.get("exclude_split") is not None and "id" not in raw["fields"]:
                raise DataFormatError(f"{path}: splits.{name}.exclude_split needs an id field under fields")
            spec = dict(spec)
            spec.setdefault("hub_split", name)
            splits[name] = SplitSpec(**spec)
        for name, spec in splits.items():
            if spec.exclude_split is not None and spec.exclude_split not in splits:
                raise DataFormatError(f"{path}: splits.{name}.exclude_split {spec.exclude_split!r} is not among splits")
        if raw["default_split"] not in splits:
            raise DataFormatError(f"{path}: default_split {raw['default_split']!r} is not among splits")
        known = {k: raw[k] for k in REQUIRED if k != "splits"}
        return cls(**known, splits=splits, description=raw.get("description", ""),
                   max_new_tokens=int(raw.get("max_new_tokens", 256)),
                   publish_text=bool(raw.get("publish_text", True)), path=path)
