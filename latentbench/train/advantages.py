"""Advantages for policy-gradient training on answer correctness (the judge's GRPO, gcache's REINFORCE)."""

from __future__ import annotations

import torch


def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-4, scale: bool = True) -> torch.Tensor:
    """GRPO's group-relative advantage, per sample: ``A[g, s] = (r[g, s] - mean_g) / (std_g + eps)``.

    ``rewards``: ``[groups, samples]``, the samples of one prompt in one row. ``std_g`` is the unbiased
    standard deviation of the group (as trl computes it); a group of one sample, or of equal rewards,
    gets advantage 0. ``scale=False`` drops the division (Dr. GRPO; trl's ``scale_rewards=False``): a
    group whose rewards differ only by a small cost term then gets small advantages, not ±1.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [groups, samples], got shape {list(rewards.shape)}")
    rewards = rewards.float()
    mean = rewards.mean(dim=1, keepdim=True)
    if rewards.shape[1] < 2:
        return torch.zeros_like(rewards)
    if not scale:
        return rewards - mean
    std = rewards.std(dim=1, keepdim=True)
    return (rewards - mean) / (std + eps)


def reinforce_advantages(rewards: torch.Tensor, baseline: float, momentum: float = 0.9
                         ) -> tuple[torch.Tensor, float]:
    """REINFORCE with a moving-average baseline (as G-Designer trains its graph generator).

    ``A = r - b`` with the baseline ``b`` from before this batch (so it does not depend on ``r``), then
    ``b' = momentum * b + (1 - momentum) * mean(r)``. Returns ``(A, b')``; start with ``b = 0``.
    """
    if not 0 <= momentum <= 1:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    rewards = rewards.float()
    new_baseline = momentum * baseline + (1 - momentum) * rewards.mean().item()
    return rewards - baseline, new_baseline
