"""Selection rules scored offline on saved trees (``latentbench select``): how ``majority``,
``consistency``, each PRM (``prm``) and ``oracle`` pick among a latent-tree dataset's decoded leaves,
with no generator run.

``eval --method latent-tree --select R`` grows each tree and picks with R. ``generate`` with the same
config and seed grows the same trees (the branching noise is owned by question and node), so scoring
one saved dataset here gives the same picks for every rule and every PRM, where ``eval`` would grow the
trees once per rule. The pick is ``method.select_leaf``, the one used by ``eval``; PRM scores come from
``PrmTrainer.inputs``, the inputs the PRM was trained on. (``beam`` changes which leaves exist, so it
needs its own run.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentbench.errors import UsageError
from latentbench.methods.latent_tree.method import select_leaf

RULES = ("majority", "consistency", "prm", "oracle")


@dataclass
class Leaf:
    """What a selection rule reads of a decoded leaf."""

    node_id: int
    parent_id: int | None
    depth: int
    prediction: str | None
    correct: bool
    consistency: float | None
    prm_score: float | None = None


@dataclass
class RuleResult:
    rule: str  # majority, consistency, oracle, or prm:<checkpoint dir>
    picks: dict[str, int] = field(default_factory=dict)  # tree key (dataset index/example id) -> chosen node
    correct: list[bool] = field(default_factory=list)  # one per tree, in the datasets' order
    leaf_metrics: dict[str, float] = field(default_factory=dict)  # prm rows: its AUROCs on these leaves

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / max(len(self.correct), 1)

    def interval(self, seed: int = 0) -> list[float]:
        from latentbench.eval.metrics import bootstrap_intervals

        verdicts = [{"pick": [c]} for c in self.correct]
        return bootstrap_intervals(verdicts, ["pick"], False, seed=seed).get("accuracy_pick", [0.0, 0.0])

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "n": len(self.correct), "accuracy": self.accuracy, "interval_95": self.interval(),
                "leaf_metrics": self.leaf_metrics, "picks": self.picks}


def decoded_leaves(datasets: Sequence[str | Path]) -> dict[str, list[Leaf]]:
    """Each tree's decoded leaves, most consistent first (ties: lower node id), as ``eval`` orders them.
    Keys are ``<dataset index>/<example id>``."""
    import polars as pl

    from latentbench.train.data import open_training_dataset

    trees: dict[str, list[Leaf]] = {}
    for index, spec in enumerate(datasets):
        ds = open_training_dataset(spec, "nodes")
        if ds.kind != "latent-tree":
            raise UsageError(f"{ds.path}: a {ds.kind} dataset; selection rules need a latent-tree dataset")
        kept = ds.table("nodes").filter(pl.col("kept").fill_null(False)).sort("example_id", "node_id")
        for row in kept.to_dicts():
            trees.setdefault(f"{index}/{row['example_id']}", []).append(
                Leaf(row["node_id"], row["parent_id"], row["depth"], row["prediction"], bool(row["correct"]),
                     row["consistency"]))
    if not trees:
        raise UsageError(f"{', '.join(map(str, datasets))}: no decoded leaves (generate with keep >= 1)")
    for leaves in trees.values():
        leaves.sort(key=lambda leaf: -(leaf.consistency or 0.0))  # stable: node order on ties
    return trees


def prm_scores(prm: str | Path, datasets: Sequence[str | Path], batch_size: int = 32) -> dict[tuple[str, int], float]:
    """The PRM's probability for every decoded leaf, keyed like ``decoded_leaves`` and by node id.
    The PRM must have been trained on the datasets' generator (``load_prm`` refuses otherwise)."""
    import torch

    from latentbench.methods.latent_tree.prm import Generator, PrmTrainer, load_prm
    from latentbench.train.data import SOURCE, TrainData

    data = TrainData(datasets, "nodes", val_fraction=0.0, where=lambda row: bool(row["kept"]))
    rows = data.rows("train")
    made_by = data.generator()
    hidden = data.array(rows[0], "hidden_ref")
    if hidden is None:
        raise UsageError(f"{data.dataset(rows[0]).path}: leaves without latent states; a PRM needs latent steps")
    module, config = load_prm(prm, Generator(made_by["id"], made_by["sha256"], hidden.shape[-1]))
    trainer = PrmTrainer(config)
    scores: dict[tuple[str, int], float] = {}
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            for row, p in zip(chunk, module(trainer.inputs(chunk, data)).sigmoid().tolist(), strict=True):
                scores[(f"{row[SOURCE]}/{row['example_id']}", row["node_id"])] = float(p)
    return scores


def score_rules(datasets: Sequence[str | Path], prms: Sequence[str | Path] = (),
                rules: Sequence[str] = RULES) -> list[RuleResult]:
    """Each rule's picks and correctness over every tree; ``prm`` once per PRM checkpoint."""
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise UsageError(f"--rules: unknown {', '.join(unknown)} (expected some of {', '.join(RULES)})")
    if "prm" in rules and not prms:
        raise UsageError("--rules prm needs at least one --prm DIR (a `latentbench train prm` output)")
    trees = decoded_leaves(datasets)
    runs: list[tuple[str, str, dict[tuple[str, int], float] | None]] = []
    for rule in rules:
        if rule == "prm":
            runs += [("prm", f"prm:{p}", prm_scores(p, datasets)) for p in prms]
        else:
            runs.append((rule, rule, None))
    results = []
    for rule, name, scores in runs:
        result = RuleResult(name)
        for key, leaves in trees.items():
            for leaf in leaves:
                leaf.prm_score = scores[(key, leaf.node_id)] if scores is not None else None
            pick = select_leaf(leaves, rule)
            result.picks[key] = pick.node_id
            result.correct.append(pick.correct)
        if scores is not None:
            result.leaf_metrics = _leaf_metrics(trees)
        results.append(result)
    return results


def _leaf_metrics(trees: dict[str, list[Leaf]]) -> dict[str, float]:
    """``prm.node_metrics`` over the decoded leaves (their current ``prm_score``): AUROC of correctness,
    Brier score and the sibling AUROC, on trees the PRM never saw."""
    import numpy as np

    from latentbench.methods.latent_tree.prm import node_metrics

    leaves = [(key, leaf) for key, group in trees.items() for leaf in group]
    rows = [{"n_correct": int(leaf.correct), "value": float(leaf.correct), "depth": leaf.depth,
             "example_id": key, "parent_id": leaf.parent_id} for key, leaf in leaves]
    return node_metrics(np.array([leaf.prm_score for _, leaf in leaves], dtype=float), rows)


def render(results: Sequence[RuleResult]) -> str:
    lines = [f"{'rule':<40} {'trees':>5}  accuracy [95% CI]    leaf AUROC  sibling AUROC"]
    for r in results:
        low, high = r.interval()
        extra = "".join(f"  {r.leaf_metrics[k]:>10.3f}" if k in r.leaf_metrics else f"  {'-':>10}"
                        for k in ("auroc", "sibling_auroc")) if r.leaf_metrics else ""
        lines.append(f"{r.rule:<40} {len(r.correct):>5}  {r.accuracy:.3f} [{low:.3f}, {high:.3f}]{extra}")
    return "\n".join(lines)
