"""Config of ``halting``: the latent-segment fields the plan fixes (shared by the method and its trainer),
then the method's own. No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from latentbench.config import ConfigError, option

Stage = Literal["A", "C"]
CONTROLS = ("off", "noise", "none", "full")


@dataclass
class SegmentConfig:
    """What the collator and the model need to lay out and run latent segments (field names as the plan fixes them)."""

    latent_token_id: int | None = option(None, "Placeholder token id of a latent slot (none: the tokenizer's pad id).")
    latent_budget_alpha: float = option(0.5, "α in B = clip(ceil(α · N^γ), min, max), N = the source's size.")
    latent_budget_gamma: float = option(0.5, "γ in the budget formula (sub-linear growth).")
    latent_budget_min: int = option(1, "Smallest budget of a segment.")
    latent_budget_max: int = option(32, "Largest budget of a segment.")
    latent_mode_stage: Stage = option("A", "A: every budgeted latent is used; C: the stop head ends a segment early.")
    latent_stop_loss_weight: float = option(1.0, "Weight of the stop BCE (stage C).")
    latent_cost_weight: float = option(0.01, "Weight of the expected used latents per segment (stage C).")
    latent_stop_threshold: float = option(0.5, "Stage C: a segment ends at the first latent with p_stop >= this.")
    latent_null_scale: float = option(0.0, "Keys and values of unused latent slots are scaled by this (0: zeroed).")
    stop_target_ratio: float = option(0.7, "ρ: the stop head's pseudo target is max(1, round(ρ · budget)).")
    latent_align_weight: float = option(1.0, "Weight of aligning each segment's last latent state with the frozen "
                                             "model's state at the end of the step it replaces (1 − cosine).")
    realign_lambda: float = option(1e-3, "Ridge λ of the hidden -> input-embedding realignment (LatentMAS).")
    stop_features: Literal["hidden", "hidden+position"] = option(
        "hidden", "What the stop head reads: the latent's last hidden state (the plan's head), or that plus the "
                  "latent's place in its segment ((k+1)/budget) and the budget (/ latent_budget_max).")

    def __post_init__(self) -> None:
        if not self.latent_budget_alpha > 0 or not self.latent_budget_gamma > 0:
            raise ConfigError("latent_budget_alpha" if not self.latent_budget_alpha > 0 else "latent_budget_gamma",
                              "must be > 0")
        if self.latent_budget_min < 0 or self.latent_budget_max < max(self.latent_budget_min, 1):
            raise ConfigError("latent_budget_max", "expected 0 <= latent_budget_min <= latent_budget_max, max >= 1")
        if self.stop_features not in ("hidden", "hidden+position"):
            raise ConfigError("stop_features", "expected hidden or hidden+position")
        if self.latent_mode_stage not in ("A", "C"):
            raise ConfigError("latent_mode_stage", "expected A or C")
        if not 0 <= self.latent_stop_threshold <= 1:
            raise ConfigError("latent_stop_threshold", "must be in [0, 1]")
        if not 0 < self.stop_target_ratio <= 1:
            raise ConfigError("stop_target_ratio", "must be in (0, 1]")
        for name in ("latent_stop_loss_weight", "latent_cost_weight", "latent_align_weight", "latent_null_scale"):
            if getattr(self, name) < 0:
                raise ConfigError(name, "must be >= 0")


@dataclass
class HaltingConfig(SegmentConfig):
    checkpoint: str | None = option(None, "A `latentbench train halting` output dir (stop head and latent adapter); "
                                          "none: untrained (LatentMAS latents, a random stop head).")
    control: Literal["off", "noise", "none", "full"] = option(
        "off", "noise: each latent replaced by a random vector of its norm; none: no latent segments; full: "
               "every budgeted latent used, never stopping (stage A on the same checkpoint).")
    plan: Literal["fixed", "gold"] = option(
        "fixed", "Segments per question: fixed (`segments` of source size `segment_size`: nothing of the answer is "
                 "known) or gold (one per line of the reference solution: for train splits; it leaks the chain's shape).")
    segments: int = option(3, "plan=fixed: latent segments per question.")
    segment_size: int = option(24, "plan=fixed: source size N of each segment (tokens of a typical step).")
    instruction: str = option('Think silently, then give the final answer as "The answer is N."',
                              "Appended to the question in the user turn.")
    max_new_tokens: int = option(32, "Answer budget after the latents (the answer is one short sentence).")
    batch_size: int = option(8, "Questions run together (left padded).")
    seed: int = option(0, "Seed of control=noise (set by the run's --seed).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.control not in CONTROLS:
            raise ConfigError("control", f"expected one of {', '.join(CONTROLS)}")
        if self.plan not in ("fixed", "gold"):
            raise ConfigError("plan", "expected fixed or gold")
        for name in ("segments", "segment_size", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1")

    @property
    def stage(self) -> Stage:
        """The stage the latents run in: control=full forces A."""
        return "A" if self.control == "full" else self.latent_mode_stage
