"""The Latent-PRM's three heads: each maps a batch of latent paths to one logit per path.

- ``MlpHead``: an MLP on the path's latent states (their masked mean and the last state).
- ``BackboneHead``: a projector (Linear -> GELU -> Linear, generator hidden -> backbone hidden) feeds the
  path's states as ``inputs_embeds`` to a causal LM's body; a linear score on the last position.
- ``KvHead``: the path's saved KV goes in as the backbone's cache (the backbone must have the
  generator's KV shapes), then a short scoring prompt; a linear score on its last position.

Backbones are frozen, or LoRA-adapted (``peft.inject_adapter_in_model``: the adapters are trained, the
rest stays frozen and out of the checkpoint). Batches are left padded (mask 0), positions from the mask.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from latentbench.models.latent import run_body


class MlpHead(nn.Module):
    """Standardized features (per-feature mean and std of the training rows, kept as buffers: a
    LayerNorm would rescale each path by its own norm and bend a linear signal) into a 3-layer MLP."""

    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(2 * hidden))
        self.register_buffer("scale", torch.ones(2 * hidden))
        self.net = nn.Sequential(nn.Linear(2 * hidden, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
                                 nn.Linear(width, 1))

    @staticmethod
    def features(batch: dict[str, Any]) -> torch.Tensor:
        """[B, 2 * hidden]: the masked mean of the path's states and its last state (left padded: -1 is real)."""
        states, mask = batch["states"], batch["mask"].unsqueeze(-1).to(batch["states"].dtype)
        return torch.cat([(states * mask).sum(1) / mask.sum(1).clamp_min(1), states[:, -1]], dim=-1)

    def standardize_on(self, batch: dict[str, Any]) -> None:
        feats = self.features(batch)
        self.shift.copy_(feats.mean(0))
        self.scale.copy_(feats.std(0).nan_to_num(1.0).clamp_min(1e-4))

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.net((self.features(batch) - self.shift) / self.scale).squeeze(-1)


def adapt(body: nn.Module, lora: bool, rank: int) -> nn.Module:
    """Freeze ``body``; with ``lora``, inject trainable LoRA adapters into its attention projections."""
    if lora:
        from peft import LoraConfig, inject_adapter_in_model

        body = inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"]),
                                       body)
    for name, param in body.named_parameters():
        param.requires_grad_(lora and "lora_" in name)
    return body


class BackboneHead(nn.Module):
    def __init__(self, body: nn.Module, generator_hidden: int, lora: bool, rank: int) -> None:
        super().__init__()
        hidden = body.config.hidden_size
        self.projector = nn.Sequential(nn.Linear(generator_hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.body = adapt(body, lora, rank)
        self.score = nn.Linear(hidden, 1)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        embeds = self.projector(batch["states"]).to(next(self.body.parameters()).dtype)
        out = run_body(self.body, batch["mask"], embeds=embeds)
        return self.score(out.last_hidden_state[:, -1].float()).squeeze(-1)


class KvHead(nn.Module):
    def __init__(self, body: nn.Module, prompt_ids: list[int], lora: bool, rank: int) -> None:
        super().__init__()
        self.body = adapt(body, lora, rank)
        self.score = nn.Linear(body.config.hidden_size, 1)
        self.register_buffer("prompt", torch.tensor(prompt_ids, dtype=torch.long), persistent=False)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        from transformers import DynamicCache

        kv = batch["kv"].to(next(self.body.parameters()).dtype)  # [B, 2, layers, kv_heads, S, head_dim]
        cache = DynamicCache(config=self.body.config)
        for layer in range(kv.shape[2]):
            cache.update(kv[:, 0, layer], kv[:, 1, layer], layer)
        prompt = self.prompt.expand(kv.shape[0], -1)
        mask = torch.cat([batch["mask"], torch.ones_like(prompt)], dim=1)
        out = run_body(self.body, mask, cache=cache, input_ids=prompt)
        return self.score(out.last_hidden_state[:, -1].float()).squeeze(-1)


def kv_shape(config: Any) -> tuple[int, int, int]:
    """(layers, kv heads, head dim) of a model config: what a KV cache of it holds per position."""
    heads = config.num_attention_heads
    return (config.num_hidden_layers, getattr(config, "num_key_value_heads", None) or heads,
            getattr(config, "head_dim", None) or config.hidden_size // heads)
