"""A latent tree on disk: how one tree is written (a ``trees`` row, ``nodes`` rows, per-node arrays),
the one-line summary of a dataset, and replay of a saved node.

Replay rebuilds a node's path KV cache from the shards and decodes from it. A path's cache is the concatenation, along the sequence axis, of the KV positions each node on the
path (root first) added. A kept leaf is replayed together with the other kept leaves of its tree, in
the batch they were decoded in at generation: the same inputs through the same batched kernels, so
under greedy decoding the text equals the saved text exactly (a batch-1 replay could differ by float
rounding on a near-tie). Other nodes decode alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentbench.errors import DatasetIntegrityError, UsageError

if TYPE_CHECKING:
    import polars as pl

    from latentbench.methods.base import Outcome
    from latentbench.methods.latent_tree.tree import TreeNode
    from latentbench.models import LoadedModel
    from latentbench.store import Dataset, ExampleWriter


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
        "prm_score": node.prm_score,
        "latent_ref": ex.add_array("latent", node.latent) if node.latent is not None else None,
        "hidden_ref": ex.add_array("hidden", node.hidden) if node.hidden is not None else None,
        "kv_ref": ex.add_array("kv", node.kv, owner=owner),
    }


def summarize(ds: Dataset) -> str:
    s = tree_stats(ds)
    return (f"trees={s['trees']} nodes={s['nodes']} decoded_leaves={s['decoded_leaves']} "
            f"correct_leaves={s['correct_leaves']} share_correct={s['share_correct']:.3f} "
            f"mixed_trees={s['mixed_trees']:.3f} distinct_answers={s['distinct_answers']:.2f} "
            f"majority_accuracy={s['majority_accuracy']:.3f}")


def tree_stats(ds: Dataset, *, cosines: bool = False) -> dict[str, Any]:
    """Whether a dataset's labels carry signal: the share of correct decoded leaves, the share of
    *mixed* trees (a correct and a wrong decoded leaf: only there do sibling values differ), distinct
    extracted answers per tree (no answer counts as one), majority accuracy. ``cosines`` adds the mean
    cosine between siblings' input latents (over steps) and between their last hidden states (reads
    every node's arrays)."""
    trees, nodes = ds.table("trees"), ds.table("nodes")
    stats = leaf_stats(trees, nodes)
    if cosines:
        stats |= _sibling_cosines(ds, nodes)
    return stats


def leaf_stats(trees: pl.DataFrame, nodes: pl.DataFrame) -> dict[str, Any]:
    """``tree_stats`` without the arrays, from the two tables."""
    import polars as pl

    per_tree = nodes.filter(pl.col("kept").fill_null(False)).group_by("example_id").agg(
        n=pl.len(), right=pl.col("correct").fill_null(False).cast(pl.Int64).sum(),
        answers=pl.col("prediction").fill_null("<none>").n_unique())
    n_trees = max(trees.height, 1)
    decoded, correct = int(per_tree["n"].sum() or 0), int(per_tree["right"].sum() or 0)
    return {
        "trees": trees.height, "nodes": nodes.height, "decoded_leaves": decoded, "correct_leaves": correct,
        "share_correct": correct / max(decoded, 1),
        "mixed_trees": int(((per_tree["right"] > 0) & (per_tree["right"] < per_tree["n"])).sum()) / n_trees,
        "distinct_answers": float(per_tree["answers"].mean() or 0.0),
        "majority_accuracy": float(trees["correct"].mean()) if trees.height else 0.0,
    }


def _sibling_cosines(ds: Dataset, nodes: pl.DataFrame) -> dict[str, float | None]:
    import numpy as np

    def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # row-wise
        return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)

    latent, state = [], []
    inner = nodes.filter(nodes["latent_ref"].is_not_null())
    for group in inner.partition_by(["example_id", "parent_id"]):
        rows = group.sort("branch_index").to_dicts()
        arrays = [(np.asarray(ds.array("latent", r["latent_ref"]), np.float64),
                   np.asarray(ds.array("hidden", r["hidden_ref"]), np.float64)) for r in rows]
        arrays = [pair for pair in arrays if len(pair[0])]  # control=none: no latent steps, nothing to compare
        for i in range(len(arrays)):
            for j in range(i + 1, len(arrays)):
                latent.append(float(cos(arrays[i][0], arrays[j][0]).mean()))
                state.append(float(cos(arrays[i][1][-1], arrays[j][1][-1])))
    return {"sibling_latent_cosine": float(np.mean(latent)) if latent else None,
            "sibling_state_cosine": float(np.mean(state)) if state else None}


@dataclass
class ReplayResult:
    example_id: str
    node_id: int
    path: list[int]  # node ids root -> node
    positions: int  # cache length rebuilt
    text: str  # decoded now
    saved_text: str | None  # decoded at generation (kept leaves only)

    @property
    def matches(self) -> bool | None:
        return None if self.saved_text is None else self.text == self.saved_text


def node_path(nodes: list[dict[str, Any]], node_id: int) -> list[dict[str, Any]]:
    """Rows from the root to ``node_id`` (inclusive)."""
    by_id = {row["node_id"]: row for row in nodes}
    if node_id not in by_id:
        raise UsageError(f"--node {node_id}: no such node (this tree has nodes 0..{max(by_id)})")
    chain = [by_id[node_id]]
    while chain[-1]["parent_id"] is not None:
        chain.append(by_id[chain[-1]["parent_id"]])
    return chain[::-1]


def replay(dataset: str | Path, example_id: str | None, node_id: int, *, lm: LoadedModel | None = None,
           device: str = "cpu") -> ReplayResult:
    import polars as pl
    import torch

    from latentbench.methods.generation import eos_token_ids
    from latentbench.models import load_model
    from latentbench.models.latent import Paths, cache_from_kv, greedy_decode
    from latentbench.store import open_dataset

    ds = open_dataset(dataset)
    trees = ds.table("trees")
    if example_id is None:
        if trees.height != 1:
            raise UsageError(f"{dataset}: holds {trees.height} trees; pass --example (e.g. {trees['example_id'][0]})")
        example_id = trees["example_id"][0]
    tree = trees.filter(pl.col("example_id") == example_id)
    if tree.height == 0:
        raise UsageError(f"--example {example_id!r} is not in {dataset}")
    nodes = ds.table("nodes").filter(pl.col("example_id") == example_id).to_dicts()
    chain = node_path(nodes, node_id)
    model = ds.manifest["model"]
    lm = lm or load_model(model["id"], device=device)
    if model.get("sha256") and lm.weights_sha256 and model["sha256"] != lm.weights_sha256:
        raise DatasetIntegrityError(f"{dataset}: made with weights {model['sha256'][:12]}…, "
                                    f"but {model['id']} now has {lm.weights_sha256[:12]}…")
    row = tree.to_dicts()[0]
    batch = sorted((n for n in nodes if n["kept"]), key=lambda n: n["node_id"]) if chain[-1]["kept"] else [chain[-1]]
    path_kv = [torch.cat([ds.array("kv", r["kv_ref"], torch=True) for r in node_path(nodes, n["node_id"])], dim=3)
               for n in batch]  # each [2, layers, kv_heads, seq, head_dim]
    positions = path_kv[0].shape[3]
    paths = Paths(cache_from_kv(lm, torch.stack(path_kv)), torch.ones(len(batch), positions, dtype=torch.long,
                  device=lm.device), torch.empty(0))
    solver = lm.tokenizer(row["solver_prompt"], add_special_tokens=False, return_tensors="pt")["input_ids"]
    tokens, _ = greedy_decode(lm, paths, solver.to(lm.device).expand(len(batch), -1), row["max_new_tokens"],
                              eos_token_ids(lm))
    mine = [n["node_id"] for n in batch].index(node_id)
    text = lm.tokenizer.decode(tokens[mine], skip_special_tokens=True)
    return ReplayResult(example_id, node_id, [r["node_id"] for r in chain], positions, text, chain[-1].get("text"))
