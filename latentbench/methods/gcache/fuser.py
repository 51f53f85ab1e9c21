"""The cache fuser: what an agent reads is its predecessors' KV blocks, concatenated along positions.

Every block is kept (no predecessor is dropped or truncated, whatever its length): a block is one
agent's turn or its latent positions, each read once. Fusion
is learned on the values only (keys, hence where attention looks, stay as computed):

    V'_b[l] = g_l · w_origin(b) · V_b[l],   g_l = 2·sigmoid(a_l),   w = P · softmax_o(s · unit(h_o))

with ``a_l`` a per-layer gate logit, ``s`` a scorer over the origin agent's last hidden state ``h_o``
and P the number of origins read. Both start at zero, so the untrained fuser is plain concatenation
(LatentMAS's cache hand-off for a chain).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Block:
    """One agent's turn or latent positions for one question: KV [layers, kv_heads, n, head_dim]."""

    origin: int  # the agent node that made it
    kind: str  # "turn" or "latent"
    keys: torch.Tensor
    values: torch.Tensor
    descriptor: torch.Tensor  # [hidden] the origin agent's last hidden state

    @property
    def length(self) -> int:
        return self.keys.shape[2]


def union(*groups: list[Block]) -> list[Block]:
    """Blocks of several predecessors, each once, in the order first seen."""
    seen: set[tuple[int, str]] = set()
    out = []
    for group in groups:
        for block in group:
            if (block.origin, block.kind) not in seen:
                seen.add((block.origin, block.kind))
                out.append(block)
    return out


class CacheFuser(nn.Module):
    def __init__(self, layers: int, hidden: int) -> None:
        super().__init__()
        self.gate_logits = nn.Parameter(torch.zeros(layers))
        self.scorer = nn.Parameter(torch.zeros(hidden))

    def origin_weights(self, blocks: list[Block]) -> dict[int, torch.Tensor]:
        """Weight per origin agent; they average 1 over the origins read."""
        origins = list(dict.fromkeys(b.origin for b in blocks))
        descriptors = {b.origin: b.descriptor for b in blocks}
        unit = torch.stack([nn.functional.normalize(descriptors[o].float(), dim=-1) for o in origins])
        weights = torch.softmax(unit.to(self.scorer.device) @ self.scorer, dim=0) * len(origins)
        return dict(zip(origins, weights, strict=True))

    def forward(self, blocks: list[Block]) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused keys and values [layers, kv_heads, Σ n_b, head_dim] (float32 on the fuser's device)."""
        weights = self.origin_weights(blocks)
        gates = 2 * torch.sigmoid(self.gate_logits)[:, None, None, None]  # [layers, 1, 1, 1]
        keys = torch.cat([b.keys for b in blocks], dim=2)
        values = torch.cat([b.values * weights[b.origin] for b in blocks], dim=2) * gates
        return keys, values.to(keys.dtype)
