"""``latent-mas``: role agents think in latent space and pass their KV cache on (LatentMAS).

Each latent agent appends its turn to the shared cache and runs m latent steps (realigned last hidden
state fed back as input); the solver then writes the answer from the accumulated cache. It is the
latent tree with one branch and no noise, batched across questions (left padding, positions from
the attention mask) instead of across siblings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from latentbench.config import ConfigError, option
from latentbench.methods.agents import (
    DEFAULT_PIPELINE,
    DEFAULT_ROLES,
    agent_prompts,
    check_roles,
    pipeline_roles,
)
from latentbench.methods.base import Outcome
from latentbench.methods.generation import eos_token_ids

if TYPE_CHECKING:
    from latentbench.models import LoadedModel
    from latentbench.tasks import Example, Task


@dataclass
class LatentMasConfig:
    agents: int = option(3, "Latent agents before the solver.")
    latent_steps: int = option(4, "m: latent steps per agent.")
    realign_lambda: float = option(1e-3, "Ridge λ of the realignment matrix.")
    max_new_tokens: int = option(0, "Solver's text budget (0: the task card's).")
    batch_size: int = option(8, "Questions per batched forward.")
    pipeline: str = option(DEFAULT_PIPELINE, "Roles of the latent agents, comma-separated, cycled.")
    roles: dict[str, str] = option(help="Role name -> prompt (the solver's included).", factory=lambda: dict(DEFAULT_ROLES))

    def __post_init__(self) -> None:
        for name in ("agents", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1")
        if self.latent_steps < 0:
            raise ConfigError("latent_steps", "must be >= 0")
        check_roles(self.pipeline, self.roles)

    @property
    def pipeline_roles(self) -> tuple[str, ...]:
        return pipeline_roles(self.pipeline)


class LatentMasMethod:
    """Role agents think in latent space and hand their KV cache on; the solver writes the answer."""

    name = "latent-mas"
    config_class = LatentMasConfig
    dataset_kinds: dict[str, tuple[str, ...]] = {}

    def __init__(self, config: LatentMasConfig) -> None:
        self.config = config

    def run(self, lm: LoadedModel, task: Task, examples: list[Example]) -> Iterator[Outcome]:
        from latentbench.models.latent import greedy_decode, latent_steps, pad_left, prefill, realignment

        cfg = self.config
        realign = realignment(lm, cfg.realign_lambda)
        pad, eos = lm.tokenizer.pad_token_id, eos_token_ids(lm)
        max_new = cfg.max_new_tokens or task.card.max_new_tokens
        for batch_index, start in enumerate(range(0, len(examples), cfg.batch_size)):
            batch = examples[start:start + cfg.batch_size]
            prompts = [agent_prompts(lm, task, ex, cfg.agents, cfg.pipeline_roles, cfg.roles) for ex in batch]
            paths = prefill(lm, *pad_left([p.first for p in prompts], pad, lm.device))
            forwards = 1
            for agent in range(cfg.agents):
                paths, _, _ = latent_steps(lm, paths, cfg.latent_steps, realign)
                forwards += cfg.latent_steps
                if agent < cfg.agents - 1:
                    paths = prefill(lm, *pad_left([p.handoffs[agent] for p in prompts], pad, lm.device), paths=paths)
                    forwards += 1
            solver_ids, solver_mask = pad_left([p.solver for p in prompts], pad, lm.device)
            tokens, decode_forwards = greedy_decode(lm, paths, solver_ids, max_new, eos, solver_mask)
            texts = lm.tokenizer.batch_decode(tokens, skip_special_tokens=True)
            used = cfg.agents * cfg.latent_steps
            for ex, prompt, text, new in zip(batch, prompts, texts, tokens, strict=True):
                yield Outcome(ex, prompt.first_text, [text], len(new), forwards + decode_forwards,
                              latent_steps=used, latent_budget=used, artifacts={"batch": batch_index})
