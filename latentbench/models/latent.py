"""Latent steps: the model "thinks" by feeding its last hidden state back as the next input embedding.

``W_a = solve(W_outᵀ W_out + λI, W_outᵀ W_in)`` maps a last-layer hidden state (output space) to the
input-embedding space (LatentMAS); the result is rescaled to the mean input-embedding norm so the
model sees inputs of the magnitude it was trained on. Every step appends one position to the KV cache.

All functions work on a batch of paths that share one ``DynamicCache`` (batch dim = path) plus a 2D
attention mask, so siblings of a tree level, or several questions, advance in one forward.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from latentbench.paths import cache_dir

if TYPE_CHECKING:
    from transformers import DynamicCache

    from latentbench.models import LoadedModel


@dataclass
class Realignment:
    matrix: torch.Tensor  # W_a [hidden, hidden]
    target_norm: float  # mean L2 norm of the input-embedding rows

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        """[batch, hidden] last hidden states -> [batch, hidden] input embeddings."""
        embeds = hidden.to(self.matrix.dtype) @ self.matrix
        return embeds * (self.target_norm / embeds.norm(dim=-1, keepdim=True).clamp_min(1e-6))


def realignment(lm: LoadedModel, lam: float = 1e-3) -> Realignment:
    """W_a for this model, computed once per weights hash (float64 solve, kept in the cache dir)."""
    path = cache_dir("realign") / f"{lm.weights_sha256[:16]}-{lam:g}.pt" if lm.weights_sha256 else None
    if path is not None and path.exists():
        saved = torch.load(path)
        return Realignment(saved["matrix"].to(lm.device, lm.model.dtype), float(saved["target_norm"]))
    w_in = lm.model.get_input_embeddings().weight.detach().double()  # [vocab, hidden]
    w_out = lm.model.get_output_embeddings().weight.detach().double()  # [vocab, hidden]
    gram = w_out.T @ w_out + lam * torch.eye(w_out.shape[1], dtype=torch.float64, device=w_out.device)
    matrix = torch.linalg.solve(gram, w_out.T @ w_in)
    target_norm = float(w_in.norm(dim=-1).mean())
    if path is not None:
        torch.save({"matrix": matrix.float().cpu(), "target_norm": target_norm}, path)
    return Realignment(matrix.to(lm.model.dtype), target_norm)


@dataclass
class Paths:
    """A batch of reasoning paths: their shared cache, attention mask and last hidden states."""

    cache: DynamicCache
    mask: torch.Tensor  # [batch, positions] 1 = real, 0 = left padding
    hidden: torch.Tensor  # [batch, hidden] last hidden state of each path

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    def select(self, index: torch.Tensor) -> Paths:
        """New paths taken by batch index (keep, reorder or repeat): a fresh cache of indexed copies, so
        ``self`` stays valid; nothing is recomputed."""
        from transformers import DynamicCache

        cache = DynamicCache()
        for layer_index, layer in enumerate(self.cache.layers):
            cache.update(layer.keys[index], layer.values[index], layer_index)
        return Paths(cache, self.mask[index], self.hidden[index])

    def repeat(self, k: int) -> Paths:
        """Each path becomes k identical children (siblings), in order: p0,p0,..,p1,p1,.."""
        return self.select(torch.arange(self.mask.shape[0], device=self.mask.device).repeat_interleave(k))


def concat_paths(parts: list[Paths]) -> Paths:
    """Paths of different lengths (e.g. several questions' trees) as one batch: each part's cache and
    mask are left padded to the longest, so the pads stay masked and positions (from the mask) are
    unchanged; each row computes what it computes alone, up to float rounding of batched kernels."""
    from transformers import DynamicCache

    longest = max(p.length for p in parts)
    cache = DynamicCache()
    for layer_index in range(len(parts[0].cache.layers)):
        keys, values = [], []
        for p in parts:
            layer, pad = p.cache.layers[layer_index], longest - p.length
            keys.append(torch.nn.functional.pad(layer.keys, (0, 0, pad, 0)))  # [batch, heads, seq, dim]
            values.append(torch.nn.functional.pad(layer.values, (0, 0, pad, 0)))
        cache.update(torch.cat(keys), torch.cat(values), layer_index)
    mask = torch.cat([torch.nn.functional.pad(p.mask, (longest - p.length, 0)) for p in parts])
    return Paths(cache, mask, torch.cat([p.hidden for p in parts]))


@functools.cache
def _cache_kwarg(model_class: type) -> str:
    """transformers renamed ``past_key_values`` to ``cache`` (5.2x); use whichever this version takes."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


@dataclass
class _Step:
    cache: DynamicCache
    last_hidden: torch.Tensor  # [batch, hidden] at the last new position


def _forward(lm: LoadedModel, paths_cache: DynamicCache | None, mask: torch.Tensor, *,
             input_ids: torch.Tensor | None = None, embeds: torch.Tensor | None = None) -> _Step:
    out = run_body(lm.model.base_model, mask, cache=paths_cache, input_ids=input_ids, embeds=embeds)
    return _Step(output_cache(out), out.last_hidden_state[:, -1])


def output_cache(out: Any) -> DynamicCache:
    """The cache a forward returned, under whichever name this transformers version uses."""
    return out["cache"] if "cache" in out else out["past_key_values"]


def run_body(body: torch.nn.Module, mask: torch.Tensor, *, cache: DynamicCache | None = None,
             input_ids: torch.Tensor | None = None, embeds: torch.Tensor | None = None) -> Any:
    """One forward of a transformer body (a causal LM's ``base_model``) over new tokens or embeddings
    appended to ``cache``; ``mask`` [batch, cached + new] marks left padding with 0 and positions come
    from its cumulative sum, so pads (even mid-sequence) are skipped. Not in inference mode: the PRM
    trains through it."""
    new = (input_ids if input_ids is not None else embeds).shape[1]
    positions = (mask.long().cumsum(-1) - 1).clamp_min(0)[:, -new:]
    return body(input_ids=input_ids, inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                use_cache=True, **{_cache_kwarg(type(body)): cache})


@torch.inference_mode()
def prefill(lm: LoadedModel, input_ids: torch.Tensor, mask: torch.Tensor | None = None,
            paths: Paths | None = None) -> Paths:
    """Append tokens [batch, n] to ``paths`` (or start new paths); left padding marked 0 in ``mask``."""
    from transformers import DynamicCache

    ones = torch.ones_like(input_ids) if mask is None else mask
    full = ones if paths is None else torch.cat([paths.mask, ones], dim=1)
    cache = DynamicCache(config=lm.model.config) if paths is None else paths.cache
    out = _forward(lm, cache, full, input_ids=input_ids)
    return Paths(out.cache, full, out.last_hidden)


NoiseFn = Callable[[int], torch.Tensor | None]  # step -> [batch, hidden] perturbation, or None


@torch.inference_mode()
def latent_steps(lm: LoadedModel, paths: Paths, steps: int, realign: Realignment,
                 noise: NoiseFn | None = None) -> tuple[Paths, torch.Tensor, torch.Tensor]:
    """Run ``steps`` latent steps on every path. Returns the advanced paths, the input latents
    [batch, steps, hidden] and the last hidden states they produced [batch, steps, hidden]."""
    inputs, hiddens = [], []
    for step in range(steps):
        embeds = realign(paths.hidden)
        delta = noise(step) if noise is not None else None
        if delta is not None:  # perturb, then back onto the input-embedding norm sphere
            embeds = embeds + delta.to(embeds)
            embeds = embeds * (realign.target_norm / embeds.norm(dim=-1, keepdim=True).clamp_min(1e-6))
        mask = torch.cat([paths.mask, paths.mask.new_ones(paths.mask.shape[0], 1)], dim=1)
        out = _forward(lm, paths.cache, mask, embeds=embeds[:, None, :].to(lm.model.dtype))
        paths = Paths(out.cache, mask, out.last_hidden)
        inputs.append(embeds)
        hiddens.append(paths.hidden)
    if not inputs:
        empty = paths.hidden.new_zeros(paths.hidden.shape[0], 0, paths.hidden.shape[1])
        return paths, empty, empty
    return paths, torch.stack(inputs, 1), torch.stack(hiddens, 1)


@torch.inference_mode()
def greedy_decode(lm: LoadedModel, paths: Paths | None, prompt_ids: torch.Tensor | None, max_new_tokens: int,
                  eos_ids: set[int], prompt_mask: torch.Tensor | None = None,
                  choose: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[list[list[int]], int]:
    """Prefill ``prompt_ids`` [batch, n] on every path (None: no cache in front), then decode until each row
    hits EOS: greedily, or with ``choose`` ([batch, vocab] logits -> [batch] ids, e.g. a sampler). With
    ``prompt_ids`` None the first token comes from ``paths.hidden`` as it is.
    Returns the new tokens per row (EOS excluded) and the number of forward calls."""
    forwards = 0
    if prompt_ids is not None:
        paths, forwards = prefill(lm, prompt_ids, prompt_mask, paths=paths), 1
    assert paths is not None, "greedy_decode needs a prompt or paths"
    head = lm.model.get_output_embeddings()
    batch = paths.hidden.shape[0]
    tokens: list[list[int]] = [[] for _ in range(batch)]
    done = [False] * batch
    for _ in range(max_new_tokens):
        logits = head(paths.hidden)  # [batch, vocab]
        next_ids = logits.argmax(-1) if choose is None else choose(logits)  # [batch]
        for row, tok in enumerate(next_ids.tolist()):
            if not done[row]:
                done[row] = tok in eos_ids
                if not done[row]:
                    tokens[row].append(tok)
        if all(done):
            break
        paths = prefill(lm, next_ids[:, None], paths=paths)
        forwards += 1
    return tokens, forwards


def pad_left(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows of different lengths -> ids and mask [batch, longest], right-aligned. Padding may sit
    mid-sequence too (a later turn of a shorter row): positions come from the mask, so it is skipped."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(row, device=device)
            mask[i, width - len(row):] = 1
    return ids, mask


def kv_slice(cache: DynamicCache, row: int, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One path's KV over positions [start, end): keys and values [layers, kv_heads, seq, head_dim]."""
    keys = torch.stack([layer.keys[row, :, start:end] for layer in cache.layers])
    values = torch.stack([layer.values[row, :, start:end] for layer in cache.layers])
    return keys, values


def cache_from_kv(lm: LoadedModel, kv: torch.Tensor) -> DynamicCache:
    """A cache from saved KV [batch, 2, layers, kv_heads, seq, head_dim] (replaying shards)."""
    from transformers import DynamicCache

    kv = kv.to(lm.device, lm.model.dtype)
    cache = DynamicCache(config=lm.model.config)
    for layer in range(kv.shape[2]):
        cache.update(kv[:, 0, layer], kv[:, 1, layer], layer)
    return cache
