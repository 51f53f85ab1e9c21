"""What ``gcache`` trains: the graph policy (GCN + MLP) and the cache fuser, around a frozen LM.

Node features come from the frozen LM itself: the mean-pooled last hidden state of the role's
description, and of the question (no sentence-embedding model ships offline, and the LM's own states
cost one forward per question).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from latentbench.methods.gcache.fuser import CacheFuser
from latentbench.methods.gcache.graph import GraphPolicy

if TYPE_CHECKING:
    from latentbench.methods.gcache.config import GraphRunConfig
    from latentbench.models import LoadedModel


class GCacheModel(nn.Module):
    """The GCN + MLP edge policy and the cache fuser; ``baseline`` is REINFORCE's moving average (state
    saved with the weights, so a resumed run continues with it)."""

    def __init__(self, hidden: int, layers: int, cfg: GraphRunConfig) -> None:
        super().__init__()
        self.policy = GraphPolicy(2 * hidden, cfg.gcn_hidden, cfg.embed_dim)
        self.fuser = CacheFuser(layers, hidden)
        self.register_buffer("baseline", torch.zeros(()))

    @classmethod
    def for_model(cls, lm: LoadedModel, cfg: GraphRunConfig) -> GCacheModel:
        config = lm.model.config
        return cls(config.hidden_size, config.num_hidden_layers, cfg)


def embed_texts(lm: LoadedModel, texts: list[str]) -> torch.Tensor:
    """[len(texts), hidden]: the LM's last hidden states, mean-pooled over each text's tokens (float32, CPU;
    an ordinary tensor, so the policy can train on it)."""
    from latentbench.models.latent import pad_left, run_body

    rows = [lm.tokenizer(t, add_special_tokens=False)["input_ids"] or [lm.tokenizer.pad_token_id] for t in texts]
    ids, mask = pad_left(rows, lm.tokenizer.pad_token_id, lm.device)
    with torch.inference_mode():
        hidden = run_body(lm.model.base_model, mask, input_ids=ids).last_hidden_state.float()  # [b, n, hidden]
        weights = mask.float()[:, :, None]
        pooled = ((hidden * weights).sum(1) / weights.sum(1)).cpu()
    return pooled.clone()
