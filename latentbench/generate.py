"""``latentbench generate``: run a method over a task and save its artifacts as a versioned dataset.

Any registered method that declares ``dataset_kinds`` can generate; the method writes each outcome
itself (``Method.write``). Resumable (the store's journal keeps every finished question; re-running
the same command skips them) and shardable (``--num-shards N --shard-index i`` takes every N-th
question from i, so N machines can share one job and their outputs cover the split exactly once).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentbench import paths
from latentbench.config import config_dict
from latentbench.errors import UsageError
from latentbench.methods.base import dataset_kind, make_method
from latentbench.progress import progress_bar
from latentbench.request import RunRequest

log = logging.getLogger(__name__)


@dataclass
class GenerateRequest(RunRequest):
    method: str = "latent-tree"
    kind: str | None = None  # None: the method's first (usually only) dataset kind
    output: str | None = None  # default: data/<task>-<kind>[-shard-i-of-n]
    num_shards: int = 1
    shard_index: int = 0
    offset: int = 0  # skip the first N questions (then --limit counts from there)
    version: str = "0.1.0"  # dataset version (semver)


def shard(items: list, num_shards: int, shard_index: int) -> list:
    """Every ``num_shards``-th item starting at ``shard_index``: disjoint, covering, order-preserving."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise UsageError(f"--shard-index {shard_index} must be in [0, --num-shards {num_shards})")
    return items[shard_index::num_shards]


def output_dir(req: GenerateRequest, kind: str) -> Path:
    if req.output:
        return Path(req.output)
    suffix = f"-shard-{req.shard_index}-of-{req.num_shards}" if req.num_shards > 1 else ""
    return Path("data") / f"{req.task}-{kind}{suffix}"


def generate(req: GenerateRequest, lm: Any = None) -> Path:
    """Generate (or resume) the dataset; returns its directory."""
    import torch

    from latentbench.models import load_model
    from latentbench.store import DatasetWriter
    from latentbench.store.writer import check_target
    from latentbench.tasks import get_task

    task = get_task(req.task)
    method = make_method(req.method, req.method_args, req.method_sources, seed=req.seed)
    kind = dataset_kind(method, req.kind)
    split = task.split(req.split)
    data_dir = paths.data_dir(req.data_dir)
    if req.offset < 0:
        raise UsageError(f"--offset must be >= 0, got {req.offset}")
    examples = task.examples(split, limit=req.offset + req.limit if req.limit else None, data_dir=data_dir,
                             allow_modified_data=req.allow_modified_data)[req.offset:]
    examples = shard(examples, req.num_shards, req.shard_index)
    out = output_dir(req, kind)
    check_target(out, "--output")  # before the model loads: a path in the way ends the command now
    lm = lm or load_model(req.model, dtype=req.dtype, device=req.device)
    info = {"task": task.name, "split": split, "license": task.card.license, "version": req.version,
            "model": {"id": lm.model_id, "revision": lm.revision, "sha256": lm.weights_sha256},
            "data_files": task.data_files(split, data_dir), "seed": req.seed,
            "method_config": {"method": method.name, **config_dict(method.config), "limit": req.limit,
                              "num_shards": req.num_shards, "shard_index": req.shard_index,
                              **({"offset": req.offset} if req.offset else {})}}
    writer = DatasetWriter(out, kind=kind, info=info, extra_kinds=list(method.dataset_kinds[kind]))
    if writer.finalized:
        log.warning("%s is already complete; nothing to do", out)
        return out
    done = writer.completed_ids()
    todo = [ex for ex in examples if ex.id not in done]
    if done:
        log.warning("resuming %s: %d of %d questions already saved", out, len(examples) - len(todo), len(examples))
    torch.manual_seed(req.seed)
    try:
        with progress_bar(f"{task.name} {kind}", len(todo), req.show_progress) as bar:
            for outcome in method.run(lm, task, todo):
                with writer.example(outcome.example.id) as ex:
                    method.write(ex, outcome, kind)
                bar.advance(tokens=outcome.generated_tokens, correct=_verdict(task, outcome) if bar.drawn else None)
        writer.finalize()
    finally:  # on an error or Ctrl-C: the examples still queued for the journal are written first
        writer.close()
    return out


def _verdict(task: Any, outcome: Any) -> bool | None:
    """Whether the answer the method gives is right, for the bar's running accuracy: text tasks only
    (scoring code means running it in the sandbox, which generate does not set up)."""
    if task.card.answer_kind == "code" or not outcome.outputs:
        return None
    return task.score(outcome.example, outcome.outputs[0]).correct[task.primary_variant]
