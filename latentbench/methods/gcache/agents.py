"""Running one batch of questions, each on its own agent graph, on the frozen LM.

Agents run in rounds: round r runs, for every question, the r-th agent of that question's topological
order, so a batch advances together even though each question has its own graph. An agent reads the
fused blocks of its direct predecessors (``fuser.py``), runs its turn (a fresh chat turn: its role
prompt around the question, as in LatentMAS) and m latent steps, and hands on what it made: its turn
and latent positions (``latent_only``: the latent ones). As in G-Designer, an agent reads its direct
predecessors only; what their ancestors said reaches it through the predecessors' own states, which
were computed attending to it. (Handing on the received cache too would make every graph with the same
ancestors, e.g. Chain and FullConnected, the same run.) The decision node reads what every agent hands
on, in topological order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from latentbench.methods.gcache.fuser import Block, CacheFuser, union
from latentbench.models.latent import Paths, concat_paths, kv_slice, latent_steps, pad_left, prefill

if TYPE_CHECKING:
    from transformers import DynamicCache

    from latentbench.methods.gcache.graph import AgentGraph
    from latentbench.models import LoadedModel
    from latentbench.models.latent import Realignment


@dataclass
class AgentRecord:
    node: int
    role: str
    prompt: str  # the agent's turn as the model read it
    context_positions: int = 0  # fused cache positions it read
    handed_positions: int = 0  # positions it hands on along its edges
    text: str | None = None  # its written note (mode=api only)
    note_tokens: int = 0  # tokens of that note


@dataclass
class QuestionRun:
    graph: AgentGraph
    agents: list[AgentRecord]
    handed: dict[int, list[Block]] = field(default_factory=dict)  # node -> the blocks it made and hands on

    def decision_blocks(self) -> list[Block]:
        """What the decision node reads: every agent's hand-off, each block once, in topological order."""
        return union(*(self.handed[n] for n in self.graph.order()))


def cache_of(keys: torch.Tensor, values: torch.Tensor) -> DynamicCache:
    """A one-row cache from fused KV [layers, kv_heads, n, head_dim]."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer in range(keys.shape[0]):
        cache.update(keys[layer][None], values[layer][None], layer)
    return cache


def fused_paths(lm: LoadedModel, fuser: CacheFuser, rows: list[list[Block]]) -> Paths | None:
    """Each row's fused blocks as one left-padded batch of paths (None when no row reads anything)."""
    if not any(rows):
        return None
    parts = []
    for blocks in rows:
        if blocks:
            keys, values = fuser(blocks)
            keys, values = keys.to(lm.device, lm.model.dtype), values.to(lm.device, lm.model.dtype)
        else:  # nothing to read: a zero-length row, all padding once batched
            ref = next(b for r in rows for b in r)
            shape = (ref.keys.shape[0], ref.keys.shape[1], 0, ref.keys.shape[3])
            keys = values = torch.zeros(shape, dtype=lm.model.dtype, device=lm.device)
        mask = torch.ones(1, keys.shape[2], dtype=torch.long, device=lm.device)
        parts.append(Paths(cache_of(keys, values), mask, torch.zeros(1, 1, device=lm.device)))
    return concat_paths(parts)


def _own_blocks(paths: Paths, row: int, node: int, start: int, turn: int, latent: int) -> list[Block]:
    """The turn and latent positions row ``row`` just added (its left padding dropped)."""
    keys, values = kv_slice(paths.cache, row, start, start + turn + latent)
    real = paths.mask[row, start:start + turn + latent].bool()
    descriptor = paths.hidden[row].detach().clone()
    out = []
    for kind, lo, hi in (("turn", 0, turn), ("latent", turn, turn + latent)):
        keep = real[lo:hi]
        if int(keep.sum()):
            out.append(Block(node, kind, keys[:, :, lo:hi][:, :, keep].clone(), values[:, :, lo:hi][:, :, keep].clone(),
                             descriptor))
    return out


@torch.inference_mode()
def run_agents(lm: LoadedModel, graphs: list[AgentGraph], roles: list[list[str]], turns: list[list[str]],
               turn_ids: list[list[list[int]]], steps: int, realign: Realignment, fuser: CacheFuser, *,
               latent_only: bool = False, note: Callable[[Paths], tuple[list[list[int]], int]] | None = None
               ) -> tuple[list[QuestionRun], int]:
    """Run every question's agents (``turns[q][node]`` text, ``turn_ids`` its tokens) in rounds. ``note``
    (mode=api) is called with the round's paths after the latents and returns each row's written tokens
    and its forward calls. Returns the runs and the forward calls."""
    runs = [QuestionRun(g, [AgentRecord(n, roles[q][n], turns[q][n]) for n in range(g.nodes)])
            for q, g in enumerate(graphs)]
    orders = [g.order() for g in graphs]
    forwards = 0
    for r in range(max(len(o) for o in orders)):
        active = [q for q, o in enumerate(orders) if r < len(o)]
        nodes = [orders[q][r] for q in active]
        reads = [union(*(runs[q].handed[p] for p in graphs[q].predecessors(n))) for q, n in zip(active, nodes, strict=True)]
        context = fused_paths(lm, fuser, reads)
        ids, mask = pad_left([turn_ids[q][n] for q, n in zip(active, nodes, strict=True)], lm.tokenizer.pad_token_id,
                             lm.device)
        start = context.length if context is not None else 0
        paths = prefill(lm, ids, mask, paths=context)
        paths, _, _ = latent_steps(lm, paths, steps, realign)
        forwards += 1 + steps
        notes: list[list[int] | None] = [None] * len(active)
        if note is not None:
            notes, calls = note(paths)
            forwards += calls
        for row, (q, n) in enumerate(zip(active, nodes, strict=True)):
            own = _own_blocks(paths, row, n, start, ids.shape[1], steps)
            runs[q].handed[n] = [b for b in own if b.kind == "latent"] if latent_only else own
            record = runs[q].agents[n]
            record.context_positions = sum(b.length for b in reads[row])
            record.handed_positions = sum(b.length for b in runs[q].handed[n])
            if notes[row] is not None:
                record.text = lm.tokenizer.decode(notes[row], skip_special_tokens=True)
                record.note_tokens = len(notes[row])
    return runs, forwards
