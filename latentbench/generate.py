"""``latentbench generate``: run a method over a task and save its artifacts as a versioned dataset.

Resumable (the store's journal keeps every finished question; re-running the same command skips
them) and shardable (``--num-shards N --shard-index i`` takes every N-th question from i, so N
machines can share one job and their outputs cover the split exactly once).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentbench import paths
from latentbench.errors import UsageError
from latentbench.progress import progress
from latentbench.request import RunRequest

if TYPE_CHECKING:
    from latentbench.methods.base import Outcome
    from latentbench.methods.latent_tree import TreeNode
    from latentbench.store.writer import ExampleWriter

log = logging.getLogger(__name__)
KINDS = ("latent-tree",)


@dataclass
class GenerateRequest(RunRequest):
    kind: str = "latent-tree"
    output: str | None = None  # default: data/<task>-<kind>[-shard-i-of-n]
    num_shards: int = 1
    shard_index: int = 0
    version: str = "0.1.0"  # dataset version (semver)


def shard(items: list, num_shards: int, shard_index: int) -> list:
    """Every ``num_shards``-th item starting at ``shard_index``: disjoint, covering, order-preserving."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise UsageError(f"--shard-index {shard_index} must be in [0, --num-shards {num_shards})")
    return items[shard_index::num_shards]


def output_dir(req: GenerateRequest) -> Path:
    if req.output:
        return Path(req.output)
    suffix = f"-shard-{req.shard_index}-of-{req.num_shards}" if req.num_shards > 1 else ""
    return Path("data") / f"{req.task}-{req.kind}{suffix}"


def generate(req: GenerateRequest, lm: Any = None) -> Path:
    """Generate (or resume) the dataset; returns its directory."""
    from latentbench.methods.latent_tree import LatentTreeConfig, LatentTreeMethod
    from latentbench.models import load_model
    from latentbench.store import DatasetWriter
    from latentbench.tasks import get_task

    if req.kind not in KINDS:
        raise UsageError(f"--kind {req.kind!r} is not one of {', '.join(KINDS)}")
    task = get_task(req.task)
    split = task.split(req.split)
    examples = shard(task.examples(split, limit=req.limit, data_dir=paths.data_dir(req.data_dir)),
                     req.num_shards, req.shard_index)
    method = LatentTreeMethod(LatentTreeConfig(**{**req.method_args, "seed": req.seed}))
    lm = lm or load_model(req.model, dtype=req.dtype, device=req.device)
    out = output_dir(req)
    info = {"task": task.name, "split": split, "model": {"id": lm.model_id, "sha256": lm.weights_sha256},
            "license": task.card.license, "version": req.version, "seed": req.seed,
            "method_config": {"method": method.name, **asdict(method.config), "limit": req.limit,
                              "num_shards": req.num_shards, "shard_index": req.shard_index}}
    writer = DatasetWriter(out, kind=req.kind, info=info, extra_kinds=["kv-shard"])
    if writer.finalized:
        log.warning("%s is already complete; nothing to do", out)
        return out
    done = writer.completed_ids()
    todo = [ex for ex in examples if ex.id not in done]
    if done:
        log.warning("resuming %s: %d of %d questions already saved", out, len(examples) - len(todo), len(examples))
    for outcome in progress(method.run(lm, task, todo), len(todo), f"{task.name} {req.kind}", req.show_progress):
        with writer.example(outcome.example.id) as ex:
            write_tree(ex, outcome)
    writer.finalize()
    return out


def write_tree(ex: ExampleWriter, outcome: Outcome) -> None:
    """One question's tree: its trees row, one nodes row per node, and the node's arrays."""
    ex.add_rows("trees", [outcome.artifacts["tree"]])
    ex.add_rows("nodes", [_node_row(ex, node) for node in outcome.artifacts["nodes"]])


def _node_row(ex: ExampleWriter, node: TreeNode) -> dict[str, Any]:
    owner = f"nodes:{node.node_id}"
    return {
        "node_id": node.node_id, "parent_id": node.parent_id, "agent_index": node.agent_index,
        "depth": node.depth, "branch_index": node.branch_index, "role": node.role,
        "consistency": node.consistency, "n_leaves": node.n_leaves, "n_correct": node.n_correct,
        "value": node.value, "label": node.label, "text": node.text, "prediction": node.prediction,
        "correct": node.correct, "kept": node.kept, "new_positions": int(node.kv.shape[3]),
        "latent_ref": ex.add_array("latent", node.latent) if node.latent is not None else None,
        "hidden_ref": ex.add_array("hidden", node.hidden) if node.hidden is not None else None,
        "kv_ref": ex.add_array("kv", node.kv, owner=owner),
    }
