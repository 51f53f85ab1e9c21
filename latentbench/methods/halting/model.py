"""The model side of ``halting``: latents generated one slot at a time on a frozen LM, a stop head, KV gating.

A latent is the LatentMAS realignment of the previous used position's last hidden state, plus a trained
residual ``adapter`` (zero at start, so an untrained model runs LatentMAS latents). Stage A uses every
budgeted slot. Stage C asks the stop head after each latent; at the first ``p_stop >= threshold`` the
segment ends and its remaining slots are gated out: they keep the placeholder embedding (never a
latent), their attention-mask entries are 0 (``latent_kv_mask``) and, once the latent prefill is over,
their keys and values are scaled by ``latent_null_scale``. Positions come from the mask's cumulative sum,
so a gated slot does not even shift the positions after it: with every latent gated, the answer sees
exactly the input without latents. This is the plain 2D attention mask every transformers attention
implementation takes (eager, sdpa, flash), so no attention code is patched.

Inference is two-phase: ``run_latents`` (the latent prefill decides used lengths and the mask), then
``answer`` decodes with that mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from latentbench.methods.halting.collate import segment_budgets
from latentbench.methods.halting.config import SegmentConfig
from latentbench.models.latent import Paths, greedy_decode, output_cache, realignment, run_body


@dataclass
class LatentRun:
    """What the latent prefill leaves: the cache and mask in front of the answer, and per segment what happened."""

    cache: Any
    mask: torch.Tensor  # [B, prompt + T]; 0 on padding and gated slots (latent_kv_mask over the latent region)
    last_hidden: torch.Tensor  # [B, H] at each row's last used position (predicts the answer's first token)
    used: list[list[int]]  # [B][M] latents used per segment
    stop_probs: list[list[list[torch.Tensor]]]  # [B][M][used] p_stop after each used latent (0-dim tensors)
    segment_hidden: list[list[torch.Tensor | None]]  # [B][M] last hidden state of the segment's last used latent
    latents: list[list[list[torch.Tensor]]]  # [B][M][used] the input latents
    forwards: int
    width: int  # T, slots of the latent region

    @property
    def latent_kv_mask(self) -> torch.Tensor:
        """[B, T]: True on used latent slots."""
        return self.mask[:, self.mask.shape[1] - self.width:].bool()


class HaltingModel(nn.Module):
    """Frozen causal LM + latent ``adapter`` + ``stop_head`` (the trained parts)."""

    def __init__(self, lm: Any, config: SegmentConfig) -> None:
        super().__init__()
        self.lm = lm.model.requires_grad_(False)
        hidden = lm.model.config.hidden_size
        self.adapter = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.adapter.weight)
        nn.init.zeros_(self.adapter.bias)
        self.stop_head = nn.Linear(hidden + (2 if config.stop_features == "hidden+position" else 0), 1)
        realign = realignment(lm, config.realign_lambda)
        self.register_buffer("realign_matrix", realign.matrix.float(), persistent=False)
        self.target_norm = realign.target_norm
        self.config = config
        self.latent_token_id = latent_token_id(lm, config)

    @property
    def body(self) -> nn.Module:
        return self.lm.base_model

    def latent(self, hidden: torch.Tensor) -> torch.Tensor:
        embeds = hidden.float() @ self.realign_matrix
        embeds = embeds * (self.target_norm / embeds.norm(dim=-1, keepdim=True).clamp_min(1e-6))
        return embeds + self.adapter(embeds)

    def p_stop(self, hidden: torch.Tensor, place: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
        """[B] stop probabilities after latents at 1-based ``place`` [B] of segments of ``budget`` [B]."""
        features = hidden.float()
        if self.config.stop_features == "hidden+position":
            budget = budget.float().clamp_min(1)
            features = torch.cat([features, (place.float() / budget)[:, None],
                                  (budget / self.config.latent_budget_max)[:, None]], dim=-1)
        return torch.sigmoid(self.stop_head(features)).squeeze(-1)

    def run_latents(self, batch: dict[str, Any], *, stage: str, threshold: float | None = None,
                    force_used: list[list[int]] | None = None, noise: torch.Generator | None = None) -> LatentRun:
        """The latent prefill. ``force_used[b][m]`` fixes how many latents a segment uses (training's stop
        targets; 0 gates a whole segment) instead of the budget (stage A) or the stop head (stage C).
        ``noise``: control=noise, each latent replaced by a random vector of its norm."""
        from transformers import DynamicCache

        threshold = self.config.latent_stop_threshold if threshold is None else threshold
        ids, mask = batch["input_ids"], batch["attention_mask"]
        n_prompt, width = int(batch["prompt_length"]), int(batch["latent_width"])
        rows, dtype = ids.shape[0], next(self.lm.parameters()).dtype
        with torch.no_grad():  # nothing trained acts on the prompt
            out = run_body(self.body, mask[:, :n_prompt], cache=DynamicCache(config=self.lm.config),
                           input_ids=ids[:, :n_prompt])
        cache, last, cur = output_cache(out), out.last_hidden_state[:, -1], mask[:, :n_prompt]
        slot_of = [_slots(spans, n_prompt, width) for spans in batch["latent_segments"]]
        n_seg = [len(spans) for spans in batch["latent_segments"]]
        budgets = segment_budgets(batch)
        used = [[0] * n for n in n_seg]
        stopped = [[False] * n for n in n_seg]
        probs: list[list[list[torch.Tensor]]] = [[[] for _ in range(n)] for n in n_seg]
        latents: list[list[list[torch.Tensor]]] = [[[] for _ in range(n)] for n in n_seg]
        seg_hidden: list[list[torch.Tensor | None]] = [[None] * n for n in n_seg]
        place = self.lm.get_input_embeddings().weight[self.latent_token_id].detach()
        for slot in range(width):
            active, nth, size = [], [], []
            for row in range(rows):
                seg = slot_of[row][slot]
                if seg is None:
                    active.append(False)
                    nth.append(0)
                    size.append(1)
                    continue
                index, k = seg
                limit = budgets[row][index] if force_used is None else force_used[row][index]
                active.append(k < limit and not stopped[row][index])
                nth.append(k + 1)
                size.append(budgets[row][index])
            on = torch.tensor(active, device=ids.device)
            embeds = self.latent(last)
            if noise is not None:
                rand = torch.randn(embeds.shape, generator=noise).to(embeds)
                embeds = rand * (embeds.norm(dim=-1, keepdim=True) / rand.norm(dim=-1, keepdim=True).clamp_min(1e-6))
            embeds = torch.where(on[:, None], embeds, place.to(embeds))
            cur = torch.cat([cur, on.long()[:, None]], dim=1)
            out = run_body(self.body, cur, cache=cache, embeds=embeds[:, None].to(dtype))
            cache, hidden = output_cache(out), out.last_hidden_state[:, -1]
            last = torch.where(on[:, None], hidden, last)
            p = self.p_stop(hidden, torch.tensor(nth, device=ids.device), torch.tensor(size, device=ids.device))
            for row in range(rows):
                if not active[row]:
                    continue
                index, _ = slot_of[row][slot]
                used[row][index] += 1
                probs[row][index].append(p[row])
                latents[row][index].append(embeds[row])
                seg_hidden[row][index] = hidden[row]
                if stage == "C" and force_used is None and float(p[row].detach()) >= threshold:
                    stopped[row][index] = True
        if width:
            gate_unused(cache, cur[:, n_prompt:], n_prompt, self.config.latent_null_scale)
        return LatentRun(cache, cur, last, used, probs, seg_hidden, latents, 1 + width, width)

    def answer_logits(self, run: LatentRun, answer_ids: torch.Tensor, answer_mask: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [B, A, vocab] for the answer tokens behind the latent prefill."""
        out = run_body(self.body, torch.cat([run.mask, answer_mask], dim=1), cache=run.cache, input_ids=answer_ids)
        hidden = torch.cat([run.last_hidden[:, None], out.last_hidden_state[:, :-1]], dim=1)
        return self.lm.get_output_embeddings()(hidden)

    @torch.inference_mode()
    def answer(self, lm: Any, run: LatentRun, max_new_tokens: int, eos_ids: set[int]) -> tuple[list[list[int]], int]:
        """Greedy answers after the latent prefill (its mask keeps gated slots out)."""
        return greedy_decode(lm, Paths(run.cache, run.mask, run.last_hidden), None, max_new_tokens, eos_ids)


def latent_token_id(lm: Any, config: SegmentConfig) -> int:
    token = config.latent_token_id if config.latent_token_id is not None else lm.tokenizer.pad_token_id
    vocab = lm.model.get_input_embeddings().weight.shape[0]
    if token is None or not 0 <= token < vocab:
        from latentbench.config import ConfigError

        raise ConfigError("latent_token_id", f"expected a token id in [0, {vocab}), got {token}")
    return int(token)


def _slots(spans: list[tuple[int, int, int]], n_prompt: int, width: int) -> list[tuple[int, int] | None]:
    """Per latent slot: (segment index, offset in the segment), or None for a padding slot."""
    slots: list[tuple[int, int] | None] = [None] * width
    for start, end, index in spans:
        for pos in range(start, end):
            slots[pos - n_prompt] = (index, pos - start)
    return slots


def gate_unused(cache: Any, latent_mask: torch.Tensor, start: int, scale: float) -> None:
    """Scale keys and values of the latent region's gated slots (mask 0) by ``scale`` (out of place, so
    gradients still flow through the used ones)."""
    factor = torch.where(latent_mask.bool(), 1.0, scale)[:, None, :, None]  # [B, 1, T, 1]
    end = start + latent_mask.shape[1]
    for layer in cache.layers:
        for name in ("keys", "values"):
            tensor = getattr(layer, name)
            gated = torch.cat([tensor[:, :, :start], tensor[:, :, start:end] * factor.to(tensor), tensor[:, :, end:]], 2)
            setattr(layer, name, gated)
