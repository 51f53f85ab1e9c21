"""``latent-mas``: role agents think in latent space and pass their KV cache on (LatentMAS).

Each latent agent appends its turn to the shared cache and runs m latent steps (realigned last hidden
state fed back as input); the solver then writes the answer from the accumulated cache. It is the
latent tree with one branch and no noise, batched across questions (left padding, positions from
the attention mask) instead of across siblings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from latentbench.errors import UsageError
from latentbench.methods.agents import DEFAULT_ROLES, agent_prompts
from latentbench.methods.base import Outcome
from latentbench.methods.generation import eos_token_ids
from latentbench.models.latent import greedy_decode, latent_steps, pad_left, prefill, realignment

if TYPE_CHECKING:
    from latentbench.models import LoadedModel
    from latentbench.tasks import Example, Task


@dataclass
class LatentMasConfig:
    agents: int = 3  # latent agents before the solver
    latent_steps: int = 4  # m: latent steps per agent
    realign_lambda: float = 1e-3
    max_new_tokens: int = 0  # 0 = the task card's
    batch_size: int = 8  # questions per batched forward
    pipeline: str = "planner,critic,refiner"
    roles: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLES))

    def __post_init__(self) -> None:
        if self.agents < 1 or self.latent_steps < 0 or self.batch_size < 1:
            raise UsageError("latent-mas: agents and batch_size must be >= 1, latent_steps >= 0")

    @property
    def pipeline_roles(self) -> tuple[str, ...]:
        return tuple(r.strip() for r in self.pipeline.split(",") if r.strip())


class LatentMasMethod:
    name = "latent-mas"

    def __init__(self, config: LatentMasConfig) -> None:
        self.config = config

    def run(self, lm: LoadedModel, task: Task, examples: list[Example]) -> Iterator[Outcome]:
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
