"""``latent-tree``: multi-agent latent reasoning that branches, with outcome-supervised node values.

Per question: the root is the first agent's turn. Each agent expands every surviving path into k
children: m latent steps (realigned last hidden state fed back as the next input), perturbed by seeded
Gaussian noise so siblings differ, then the next agent's turn (``protocol=latentmas``, the default: a
fresh turn with the question under the agent's role prompt, as latent-mas runs it; ``compact``: a short
handoff). The leaves are decoded by the judger (latentmas: it reasons, then answers; compact: the solver). Siblings of a whole level
advance as one batched forward over their parents' caches (re-indexed, never recomputed). At the last
agent the top-K leaves by consistency are decoded by the solver and scored against the gold answer;
every node's value is the share of correct decoded leaves below it (Monte-Carlo outcome supervision,
as Math-Shepherd does for text steps).

Consistency score: cosine similarity of a node's own last latent state (before the next agent's turn)
to the mean of those of all nodes at its depth — the latent analogue of self-consistency (paths that agree with the
consensus of their siblings rank first).

With a trained Latent-PRM (``prm=DIR``, see ``prm.py``) every node gets a PRM score as the tree grows,
``beam=B`` keeps only the B best paths per level, and ``select`` picks the final leaf (majority,
consistency, prm or the oracle bound).

Branching scheme: Gaussian perturbation of each latent input, ``e + τ·‖e‖·ε/√d`` with ε ~ N(0, I),
then back onto the input-embedding norm. τ = 0 gives plain LatentMAS; noise is drawn per node from a
generator seeded by (seed, question id, node id), so a node's noise does not depend on batch
composition, resume point or shard (its latents do only up to float rounding of batched kernels).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import torch

from latentbench.config import config_dict
from latentbench.methods.agents import as_batch, protocol_prompts
from latentbench.methods.base import Outcome
from latentbench.methods.generation import eos_token_ids
from latentbench.methods.latent_tree import record
from latentbench.methods.latent_tree.config import LatentTreeConfig
from latentbench.methods.latent_tree.tree import TreeNode, assign_values, consistency_scores, node_noise
from latentbench.models.latent import (
    Paths,
    Realignment,
    greedy_decode,
    kv_slice,
    latent_steps,
    prefill,
    realignment,
)

if TYPE_CHECKING:
    from latentbench.models import LoadedModel
    from latentbench.store import Dataset, ExampleWriter
    from latentbench.tasks import Example, Task


@dataclass
class _Grown:
    """A tree grown down to its leaves, before decoding."""

    example: Example
    prompts: Any  # methods.agents prompts of its protocol
    nodes: list[TreeNode]
    leaves: list[TreeNode]
    paths: Paths  # one path per leaf, in leaf order
    forwards: int
    latent_total: int


class LatentTreeMethod:
    """Branching latent agents: k latent children per node, top-K leaves decoded, node values from outcomes."""

    name = "latent-tree"
    config_class = LatentTreeConfig
    dataset_kinds: dict[str, tuple[str, ...]] = {"latent-tree": ("kv-shard",)}

    def __init__(self, config: LatentTreeConfig) -> None:
        self.config = config
        self._prm: Any = None  # (module, PrmConfig) once loaded for a generator


    def write(self, ex: ExampleWriter, outcome: Outcome, kind: str) -> None:
        record.write_tree(ex, outcome)

    @staticmethod
    def summarize(dataset: Dataset) -> str:
        return record.summarize(dataset)

    def run(self, lm: LoadedModel, task: Task, examples: list[Example]) -> Iterator[Outcome]:
        from latentbench.methods.latent_ops import controlled

        realign = controlled(realignment(lm, self.config.realign_lambda), self.config.control)
        if self.config.prm and self._prm is None:
            from latentbench.methods.latent_tree.prm import Generator, load_prm

            self._prm = load_prm(self.config.prm, Generator.of(lm))
        for start in range(0, len(examples), self.config.batch_size):
            yield from self.grow_batch(lm, task, examples[start:start + self.config.batch_size], realign)

    def grow(self, lm: LoadedModel, task: Task, example: Example, realign: Realignment) -> Outcome:
        """One question's tree, decoded alone."""
        return self.grow_batch(lm, task, [example], realign)[0]

    def grow_batch(self, lm: LoadedModel, task: Task, examples: list[Example], realign: Realignment) -> list[Outcome]:
        """Each question's tree grows alone; their kept leaves are then decoded in one batch. The decoding
        forwards are counted on the first question's outcome, so the outcomes' forwards add up."""
        grown = [self._grow_latent(lm, task, example, realign) for example in examples]
        max_new = self.resolved(task)["max_new_tokens"]
        decoded = self._decode_kept(lm, task, grown, max_new)
        answering = "judger" if self.config.protocol == "latentmas" else "solver"
        outcomes = []
        for i, tree in enumerate(grown):
            assign_values(tree.nodes)
            outcome = self._outcome(tree.example, tree.prompts.first_text, tree.nodes,
                                    tree.forwards + (decoded if i == 0 else 0), tree.latent_total, max_new)
            outcome.agent_prompts = tree.prompts.turns(answering)
            outcome.artifacts["tree"].update(
                solver_prompt=tree.prompts.solver_text, max_new_tokens=max_new,
                question=tree.example.question if task.card.publish_text else None)
            outcomes.append(outcome)
        return outcomes

    def resolved(self, task: Task) -> dict[str, Any]:
        """The judger's budget of 0 resolved to the task card's; protocol=compact gives no system message."""
        cfg = self.config
        return {**config_dict(cfg), "max_new_tokens": cfg.max_new_tokens or task.card.max_new_tokens,
                "system_prompt": cfg.system_prompt if cfg.protocol == "latentmas" else ""}

    def _grow_latent(self, lm: LoadedModel, task: Task, example: Example, realign: Realignment) -> _Grown:
        """The tree's nodes down to its leaves (latent steps and turns; nothing decoded yet)."""
        cfg = self.config
        prompts = protocol_prompts(lm, task, example, protocol=cfg.protocol, agents=cfg.agents,
                                   pipeline=cfg.pipeline_roles, templates=cfg.templates(task.card.answer_kind),
                                   system=cfg.system_prompt)
        paths = prefill(lm, as_batch(prompts.first, 1, lm.device))
        nodes = [TreeNode(0, None, 0, 0, 0, prompts.roles[0], self._kv(paths, 0, 0, paths.length),
                          paths.hidden[0].clone())]
        frontier, forwards, latent_total = [nodes[0]], 1, 0
        for depth in range(1, cfg.agents + 1):
            start = paths.length
            paths = paths.repeat(cfg.branches)  # [len(frontier) * k] paths, siblings adjacent
            children = [(parent, b) for parent in frontier for b in range(cfg.branches)]
            ids = [len(nodes) + i for i in range(len(children))]
            paths, latents, hiddens = latent_steps(lm, paths, cfg.steps_run, realign, self._noise(example, ids, realign))
            own_last = paths.hidden.clone()  # the node's own last latent state, before the next agent's turn
            forwards += cfg.steps_run
            latent_total += cfg.steps_run * len(children)
            if depth < cfg.agents:  # the next agent's turn opens on every child path
                paths = prefill(lm, as_batch(prompts.handoffs[depth - 1], len(children), lm.device), paths=paths)
                forwards += 1
            frontier = []
            for row, ((parent, branch), node_id) in enumerate(zip(children, ids, strict=True)):
                node = TreeNode(node_id, parent.node_id, depth, branch, depth - 1, prompts.roles[depth - 1],
                                self._kv(paths, row, start, paths.length), own_last[row],
                                latents[row].clone(), hiddens[row].clone())
                nodes.append(node)
                frontier.append(node)
            if self._prm is not None:
                paths, frontier = self._score_and_prune(paths, frontier, nodes, last=depth == cfg.agents)
        self._score_depths(nodes)
        return _Grown(example, prompts, nodes, frontier, paths, forwards, latent_total)

    def _score_and_prune(self, paths: Paths, level: list[TreeNode], nodes: list[TreeNode],
                         last: bool) -> tuple[Paths, list[TreeNode]]:
        """PRM scores for a level's nodes (on the same inputs it was trained on: the path's latent states,
        or its cache as saved), then, with ``beam``, only the B best paths go on (ties: earlier node)."""
        from latentbench.methods.latent_tree.prm import states_batch

        module, prm_config = self._prm
        by_id = {n.node_id: n for n in nodes}

        def path_states(node: TreeNode) -> torch.Tensor:
            chain = [node]
            while chain[-1].parent_id is not None and by_id[chain[-1].parent_id].hidden is not None:
                chain.append(by_id[chain[-1].parent_id])
            return torch.cat([n.hidden.float() for n in reversed(chain)])

        with torch.no_grad():
            if prm_config.head == "kv":
                layers = paths.cache.layers
                kv = torch.stack([torch.stack([layer.keys for layer in layers], 1),
                                  torch.stack([layer.values for layer in layers], 1)], 1)
                batch = {"kv": kv.float(), "mask": paths.mask}  # [B, 2, layers, kv_heads, S, head_dim]
            else:
                batch = states_batch([path_states(n) for n in level])
            scores = module(batch).sigmoid().tolist()
        for node, score in zip(level, scores, strict=True):
            node.prm_score = float(score)
        beam = self.config.beam
        if beam is None or beam >= len(level):
            return paths, level
        best = sorted(sorted(range(len(level)), key=lambda i: (-scores[i], i))[:beam])
        if last:
            for i in set(range(len(level))) - set(best):
                level[i].kept = False  # a pruned leaf is not decoded
        return paths.select(torch.tensor(best, device=paths.mask.device)), [level[i] for i in best]

    def _noise(self, example: Example, node_ids: list[int], realign: Realignment) -> Any:
        cfg = self.config
        if cfg.latent_temperature == 0 or cfg.steps_run == 0:
            return None
        dim = realign.matrix.shape[0]
        scale = cfg.latent_temperature * realign.target_norm / dim ** 0.5
        noise = torch.stack([node_noise(cfg.seed, example.id, i, cfg.latent_steps, dim, scale) for i in node_ids])
        return lambda step: noise[:, step]

    def _kv(self, paths: Paths, row: int, start: int, end: int) -> torch.Tensor:
        keys, values = kv_slice(paths.cache, row, start, end)
        kv = torch.stack([keys, values])  # [2, layers, kv_heads, seq, head_dim], a copy
        return kv if self.config.kv_dtype == "model" else kv.to(getattr(torch, self.config.kv_dtype))

    @staticmethod
    def _score_depths(nodes: list[TreeNode]) -> None:
        for depth in sorted({n.depth for n in nodes if n.depth > 0}):
            level = [n for n in nodes if n.depth == depth]
            for node, score in zip(level, consistency_scores(torch.stack([n.last_hidden for n in level])), strict=True):
                node.consistency = score

    def _decode_kept(self, lm: LoadedModel, task: Task, grown: list[_Grown], max_new: int) -> int:
        """Decode each tree's top-K leaves by consistency (ties: earlier leaf), all trees in one batch
        (left padded; a single tree needs no padding), and score them. Returns the forward calls."""
        from latentbench.models.latent import concat_paths, pad_left

        parts, solver_rows, decoded = [], [], []
        for tree in grown:
            leaves = tree.leaves
            order = sorted(range(len(leaves)), key=lambda i: (-(leaves[i].consistency or 0.0), i))
            kept = sorted(order if self.config.keep == "all" else order[: self.config.keep])
            for i, leaf in enumerate(leaves):
                leaf.kept = i in kept
            parts.append(tree.paths.select(torch.tensor(kept, device=tree.paths.mask.device)))
            solver_rows += [tree.prompts.solver] * len(kept)
            decoded += [(tree.example, leaves[i]) for i in kept]
        paths = parts[0] if len(parts) == 1 else concat_paths(parts)
        ids, mask = pad_left(solver_rows, lm.tokenizer.pad_token_id, lm.device)
        tokens, forwards = greedy_decode(lm, paths, ids, max_new, eos_token_ids(lm), mask)
        texts = lm.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        scores = task.score_many([example for example, _ in decoded], texts)
        for (_, leaf), text, new_tokens, score in zip(decoded, texts, tokens, scores, strict=True):
            leaf.text, leaf.generated_tokens = text, len(new_tokens)
            leaf.prediction = score.extracted.get("flexible", score.extracted.get("program"))
            leaf.correct = score.correct[task.primary_variant]
        return forwards

    def _outcome(self, example: Example, prompt: str, nodes: list[TreeNode], forwards: int, latent: int,
                 max_new: int) -> Outcome:
        decoded = sorted((n for n in nodes if n.kept), key=lambda n: -(n.consistency or 0.0))
        winner = select_leaf(decoded, self.config.select)
        best = winner.prediction
        tree = {"question_id": example.id.rsplit("/", 1)[-1], "gold": example.gold,
                "config": json.dumps(asdict(self.config), sort_keys=True), "n_agents": self.config.agents,
                "branching": self.config.branches, "top_k": len(decoded), "n_nodes": len(nodes),
                "n_leaves": len(decoded), "n_correct": sum(bool(n.correct) for n in decoded),
                "prediction": best, "correct": bool(winner.correct)}
        tokens = sum(n.generated_tokens for n in decoded)
        metrics = {"prm_score": winner.prm_score} if winner.prm_score is not None else {}
        return Outcome(example, prompt, [winner.text or ""], tokens, forwards, latent_steps=latent,
                       latent_budget=latent, artifacts={"tree": tree, "nodes": nodes}, metrics=metrics,
                       truncated=[winner.generated_tokens >= max_new])  # decoding stops at EOS or the budget


class Pickable(Protocol):
    prediction: str | None
    correct: bool | None
    prm_score: float | None


LeafT = TypeVar("LeafT", bound=Pickable)


def select_leaf(decoded: Sequence[LeafT], rule: str) -> LeafT:
    """The final pick among decoded leaves (``decoded`` sorted most consistent first): majority answer
    (ties: the most consistent), the most consistent leaf, the best PRM score, or the oracle (a correct
    leaf if any, else the majority pick)."""
    if rule == "consistency":
        return decoded[0]
    if rule == "prm":
        return max(decoded, key=lambda n: n.prm_score if n.prm_score is not None else -1.0)  # first on ties
    if rule == "oracle" and any(n.correct for n in decoded):
        return next(n for n in decoded if n.correct)
    votes = Counter(n.prediction for n in decoded if n.prediction is not None)
    best = votes.most_common(1)[0][0] if votes else None
    return next((n for n in decoded if n.prediction == best), decoded[0])
