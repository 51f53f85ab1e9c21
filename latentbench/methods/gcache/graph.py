"""The agent graph: fixed baseline topologies, the GCN that proposes edges (G-Designer), and sampling a DAG.

Learned graph: node features = role embedding ‖ question embedding; two ``GCNConv`` layers over the
prior role adjacency, an MLP, edge logits ``Z·Zᵀ`` min-max normalised to [−1, 1] over the candidate
edges, ``p = sigmoid(logit / T)``. Candidate edges are visited in row-major order (0→1, 0→2, …, 1→0, …);
an edge that would close a cycle with those already taken is skipped (it is not a choice, so it adds
nothing to the log-probability); every other candidate is taken with probability p. The graph's
log-probability is the sum of log p over taken and log(1 − p) over candidates not taken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

Edge = tuple[int, int]


@dataclass
class AgentGraph:
    """One question's graph over ``nodes`` agents (a DAG)."""

    nodes: int
    edges: list[Edge]
    probs: dict[Edge, float] = field(default_factory=dict)  # every candidate the sampler decided on
    log_prob: torch.Tensor | None = None  # scalar, with grad for a learned graph; None for a fixed one

    def predecessors(self, node: int) -> list[int]:
        return sorted(i for i, j in self.edges if j == node)

    def order(self) -> list[int]:
        """A topological order (Kahn's; ties by node index)."""
        indegree = [0] * self.nodes
        for _, j in self.edges:
            indegree[j] += 1
        ready, out = [n for n in range(self.nodes) if indegree[n] == 0], []
        while ready:
            node = ready.pop(0)
            out.append(node)
            for i, j in sorted(self.edges):
                if i == node:
                    indegree[j] -= 1
                    if indegree[j] == 0:
                        ready.append(j)
            ready.sort()
        if len(out) != self.nodes:
            raise ValueError(f"graph with edges {self.edges} has a cycle")
        return out


def node_count(graph: str, agents: int) -> int:
    """Agent nodes of a topology: Debate runs every role twice; DirectAnswer one agent."""
    return {"Debate": 2 * agents, "DirectAnswer": 1}.get(graph, agents)


def fixed_edges(graph: str, n: int) -> list[Edge]:
    """The edges of a fixed topology over ``n`` nodes (Random and learned are sampled, not fixed)."""
    if graph == "FullConnected":
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    if graph == "Chain":
        return [(i, i + 1) for i in range(n - 1)]
    if graph == "Star":
        return [(0, j) for j in range(1, n)]
    if graph == "Layered":
        half = (n + 1) // 2
        return [(i, j) for i in range(half) for j in range(half, n)]
    if graph == "Debate":  # n = 2 · agents: the second round reads every first-round agent
        rounds = n // 2
        return [(i, rounds + j) for i in range(rounds) for j in range(rounds)]
    if graph == "DirectAnswer":
        return []
    raise ValueError(f"{graph} has no fixed edges")


def reaches(edges: list[Edge], start: int, goal: int) -> bool:
    """Whether a directed path leads from ``start`` to ``goal``."""
    stack, seen = [start], {start}
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for i, j in edges:
            if i == node and j not in seen:
                seen.add(j)
                stack.append(j)
    return False


def _walk(probs: torch.Tensor, mask: torch.Tensor, take: Callable[[int, int, torch.Tensor], bool]) -> AgentGraph:
    """Visit the candidates in row-major order, skipping those that would close a cycle; ``take`` decides."""
    n = probs.shape[0]
    edges: list[Edge] = []
    considered: dict[Edge, float] = {}
    terms = []
    for i in range(n):
        for j in range(n):
            if i == j or not bool(mask[i, j]) or reaches(edges, j, i):
                continue
            p = probs[i, j]
            taken = take(i, j, p)
            considered[(i, j)] = float(p.detach())
            terms.append(torch.log(p.clamp_min(1e-8)) if taken else torch.log((1 - p).clamp_min(1e-8)))
            if taken:
                edges.append((i, j))
    log_prob = torch.stack(terms).sum() if terms else probs.sum() * 0.0
    return AgentGraph(n, edges, considered, log_prob)


def sample_dag(probs: torch.Tensor, mask: torch.Tensor, *, threshold: bool = False,
               generator: torch.Generator | None = None) -> AgentGraph:
    """Bernoulli edges from ``probs`` [n, n] where ``mask`` [n, n] allows them, skipping any that would
    close a cycle; ``threshold``: take exactly those with p >= 0.5. Keeps the autograd graph of ``probs``."""
    draws = torch.rand(probs.shape, generator=generator)  # one draw per ordered pair: a fixed stream per graph
    if threshold:
        return _walk(probs, mask, lambda i, j, p: bool(p >= 0.5))
    return _walk(probs, mask, lambda i, j, p: bool(draws[i, j] < p.detach()))


def log_prob_of(probs: torch.Tensor, mask: torch.Tensor, edges: list[Edge]) -> torch.Tensor:
    """log π(graph) of a given DAG under ``probs`` (the sampler's walk with its decisions fixed)."""
    wanted = set(edges)
    return _walk(probs, mask, lambda i, j, p: (i, j) in wanted).log_prob


class GraphPolicy(nn.Module):
    """Two GCN layers and an MLP over node features; ``forward`` gives the edge probabilities [n, n]."""

    def __init__(self, in_dim: int, hidden: int, embed: int) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.conv1, self.conv2 = GCNConv(in_dim, hidden), GCNConv(hidden, hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, embed))

    def logits(self, features: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """[n, in_dim] features, [2, E] prior edges -> [n, n] logits in [−1, 1] (min-max over off-diagonal)."""
        x = nn.functional.layer_norm(features.float(), features.shape[-1:])  # LM states: large, uneven scales
        x = torch.relu(self.conv1(x, edge_index))
        z = self.mlp(torch.relu(self.conv2(x, edge_index)))  # [n, embed]
        scores = z @ z.T
        n = scores.shape[0]
        off = ~torch.eye(n, dtype=torch.bool, device=scores.device)
        if n < 2:
            return torch.zeros_like(scores)
        lo, hi = scores[off].min(), scores[off].max()
        return (scores - lo) / (hi - lo).clamp_min(1e-8) * 2 - 1

    def forward(self, features: torch.Tensor, edge_index: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        return torch.sigmoid(self.logits(features, edge_index) / temperature)


def candidate_mask(n: int) -> torch.Tensor:
    """Edges the sampler may take: every ordered pair of distinct nodes (learned, Random)."""
    return ~torch.eye(n, dtype=torch.bool)


def make_graph(graph: str, n: int, probs: torch.Tensor | None = None, *, threshold: bool = False,
               generator: torch.Generator | None = None) -> AgentGraph:
    """A question's graph: sampled from ``probs`` (learned), from p = 0.5 (Random), or fixed."""
    if graph == "learned":
        assert probs is not None, "a learned graph needs the policy's edge probabilities"
        return sample_dag(probs, candidate_mask(n), threshold=threshold, generator=generator)
    if graph == "Random":
        sampled = sample_dag(torch.full((n, n), 0.5), candidate_mask(n), generator=generator)
        return AgentGraph(n, sampled.edges, sampled.probs)
    edges = fixed_edges(graph, n)
    return AgentGraph(n, edges, dict.fromkeys(edges, 1.0))
