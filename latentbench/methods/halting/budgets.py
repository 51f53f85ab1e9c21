"""Segment budgets and sources (no torch): the one place the budget formula lives.

A segment replaces one source: a chain-of-thought step (N = its token count) or an image
(N = t·h·w // merge², the vision tokens a Qwen2-VL-style merger leaves). Its budget is
``B = clip(ceil(alpha · N ** gamma), min, max)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from latentbench.methods.halting.config import SegmentConfig


def segment_budget(n: int, config: SegmentConfig) -> int:
    raw = math.ceil(config.latent_budget_alpha * n ** config.latent_budget_gamma) if n > 0 else 0
    return int(min(max(raw, config.latent_budget_min), config.latent_budget_max))


def image_source_size(grid_thw: tuple[int, int, int], merge: int = 2) -> int:
    """N of an image segment from its ``image_grid_thw`` row (t, h, w) in patches."""
    t, h, w = grid_thw
    return t * h * w // merge**2


def stop_target(budget: int, rho: float) -> int:
    """The stop head's pseudo target: stop exactly at latent ``max(1, round(rho · budget))`` (1-based)."""
    return max(1, round(rho * budget))


def chain_steps(solution: str) -> list[str]:
    """A GSM8K-style solution's steps: its non-empty lines before the ``#### answer`` line."""
    steps = []
    for line in solution.splitlines():
        if line.strip().startswith("####"):
            break
        if line.strip():
            steps.append(line.strip())
    return steps


@dataclass(frozen=True)
class Source:
    """What one segment replaces."""

    kind: Literal["step", "image"]
    size: int  # N: tokens of the step, or merged image patches
    text: str | None = None  # the step's text (step segments)
