"""A latent tree's nodes and the arithmetic on them: per-node noise, outcome values, consistency."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch


@dataclass
class TreeNode:
    node_id: int
    parent_id: int | None
    depth: int
    branch_index: int
    agent_index: int
    role: str
    kv: torch.Tensor  # [2, layers, kv_heads, new_positions, head_dim]
    last_hidden: torch.Tensor  # [hidden] state the node ends on (consistency)
    latent: torch.Tensor | None = None  # [m, hidden] input latents
    hidden: torch.Tensor | None = None  # [m, hidden] last hidden state after each latent step
    consistency: float | None = None
    kept: bool | None = None
    text: str | None = None
    prediction: str | None = None
    correct: bool | None = None
    generated_tokens: int = 0
    prm_score: float | None = None
    n_leaves: int = 0
    n_correct: int = 0

    @property
    def value(self) -> float | None:
        return self.n_correct / self.n_leaves if self.n_leaves else None

    @property
    def label(self) -> bool | None:
        return self.n_correct > 0 if self.n_leaves else None


def node_noise(seed: int, example_id: str, node_id: int, steps: int, dim: int, scale: float) -> torch.Tensor:
    """[steps, dim] Gaussian noise owned by one node: same values whatever the batch or resume point."""
    key = int(hashlib.sha256(f"{seed}|{example_id}|{node_id}".encode()).hexdigest()[:16], 16)
    return torch.randn(steps, dim, generator=torch.Generator().manual_seed(key)) * scale


def assign_values(nodes: list[TreeNode]) -> None:
    """n_leaves / n_correct of every node = its decoded leaves below (itself included for leaves)."""
    by_id = {n.node_id: n for n in nodes}
    for node in nodes:
        node.n_leaves = node.n_correct = 0
    for leaf in nodes:
        if not leaf.kept:
            continue
        current: TreeNode | None = leaf
        while current is not None:
            current.n_leaves += 1
            current.n_correct += int(bool(leaf.correct))
            current = by_id[current.parent_id] if current.parent_id is not None else None


def consistency_scores(last_hidden: torch.Tensor) -> list[float]:
    """Cosine similarity of each row [n, hidden] to the rows' mean."""
    centroid = last_hidden.mean(0, keepdim=True)
    return torch.nn.functional.cosine_similarity(last_hidden.float(), centroid.float(), dim=-1).tolist()
