"""What an output directory already holds: the run's identity (trainer + config) and metrics.jsonl."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentbench.errors import UsageError
from latentbench.paths import check_writable_dir
from latentbench.train import checkpoint as ckpt

METRICS = "metrics.jsonl"
# Fields that may change between a run and its continuation: they do not change what is learned step by step.
RESUMABLE = frozenset({"max_steps", "eval_every", "save_every", "device"})


@dataclass
class TrainResult:
    output: Path
    steps: int
    train_loss: float | None  # of the last step
    val: dict[str, float] = field(default_factory=dict)  # the last validation's loss and metrics


def check_output(out: Path, record: dict[str, Any], max_steps: int) -> Path | None:
    """The resume point to continue from (None: start afresh). UsageError, one line, if ``out`` holds
    something else: not a training run, another trainer or config, or more steps than ``max_steps``."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory (expected a training output directory)")
    check_writable_dir(out, "--output")  # before any data or model loads
    if not out.exists():
        return None
    points = ckpt.resume_points(out)
    before = ckpt.read_state(points[-1])["config"] if points else ckpt.read_json(out / ckpt.CONFIG)
    if before is None:
        if any(p.name not in (METRICS, ckpt.CHECKPOINTS) for p in out.iterdir()):
            raise UsageError(f"{out}: directory is not empty and holds no training run; refusing to write into it")
        return None
    if before.get("trainer") != record["trainer"]:
        raise UsageError(f"{out}: holds a {before.get('trainer')} run, not {record['trainer']} "
                         "(use another output directory)")
    old, new = before.get("config", {}), record["config"]
    differ = [k for k in sorted(set(old) | set(new)) if k not in RESUMABLE and old.get(k) != new.get(k)]
    if differ:
        what = ", ".join(f"{k}={old.get(k)!r} there, {new.get(k)!r} here" for k in differ)
        raise UsageError(f"{out}: holds a {record['trainer']} run with another config ({what}); "
                         "use another output directory")
    done = ckpt.read_state(points[-1])["step"] if points else 0
    if done > max_steps:
        raise UsageError(f"{out}: holds a run trained for {done} steps, more than max_steps={max_steps} "
                         "(use another output directory)")
    return points[-1] if points else None


def check_datasets(out: Path, latest: Path | None, hashes: list[str]) -> None:
    """Continuing (or calling finished) a run trained on other data would mix two trainings."""
    before = ckpt.read_state(latest).get("datasets") if latest else None
    prov = ckpt.read_json(out / ckpt.PROVENANCE)
    if before is None and isinstance(prov, dict):
        before = [d["manifest_sha256"] for d in prov.get("datasets", [])]
    if before is not None and before != hashes:
        raise UsageError(f"{out}: holds a run trained on other datasets (manifest sha256 {before} there, {hashes} "
                         "here; the order counts); use another output directory")


class MetricsLog:
    """metrics.jsonl: one ``{"step", "split", "loss", ...}`` line per train step and per validation."""

    def __init__(self, path: Path, write: bool = True) -> None:
        self.path, self.write = path, write

    def lines(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def append(self, line: dict[str, Any]) -> None:
        if self.write:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(line) + "\n")

    def truncate(self, step: int) -> None:
        """Drop lines after ``step`` (written after the resume point, so they are replayed)."""
        if not self.write or not self.path.is_file():
            return
        kept = [json.dumps(line) + "\n" for line in self.lines() if line["step"] <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, self.path)

    def result(self, out: Path) -> TrainResult:
        lines = self.lines()
        train = [line for line in lines if line["split"] == "train"]
        val = [line for line in lines if line["split"] == "val"]
        last_val = {k: v for k, v in val[-1].items() if k not in ("step", "split")} if val else {}
        return TrainResult(out, train[-1]["step"] if train else 0, train[-1]["loss"] if train else None, last_val)
