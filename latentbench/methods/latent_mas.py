"""``latent-mas``: role agents think in latent space and pass their KV cache on (LatentMAS).

``protocol=latentmas`` (default) is the reference's HF path (Gen-Verse/LatentMAS,
``methods/latent_mas.py: run_batch``): every agent, the judger included, gets a fresh chat turn (system
message + its role prompt around the question) appended to the previous agents' cache (their prompts
and latent positions); each agent but the judger then runs m latent steps; the judger writes the
answer from the whole cache. ``protocol=compact`` is ours: the question once, short handoff turns, a
solver turn. Both batch questions with left padding and positions from the mask (the reference's
batching is not reproduced: see docs/latent-tree.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from latentbench.config import ConfigError, config_dict, option
from latentbench.methods.agents import (
    AgentTurnsConfig,
    cycled_roles,
)
from latentbench.methods.base import Outcome

if TYPE_CHECKING:
    from latentbench.models import LoadedModel
    from latentbench.models.latent import Realignment
    from latentbench.tasks import Example, Task


@dataclass
class LatentMasConfig(AgentTurnsConfig):
    agents: int = option(3, "Latent agents before the judger (solver).")
    latent_steps: int = option(4, "m: latent steps per agent (latentmas with 0: the judger sees no cache, as in "
                                  "the reference).")
    realign: bool = option(True, "Map hidden states with W_a (the reference's --latent_space_realign, off there "
                                 "by default); off: identity, still rescaled to the mean embedding norm.")
    realign_lambda: float = option(1e-3, "Ridge λ of W_a (the reference uses 1e-5).")
    max_new_tokens: int = option(0, "Judger's text budget (0: the task card's).")
    temperature: float = option(0.0, "Judger's sampling temperature (0: greedy; the reference samples at 0.6).")
    top_p: float = option(0.95, "Judger's nucleus mass when sampling (the reference's 0.95).")
    batch_size: int = option(8, "Questions per batched forward.")

    def __post_init__(self) -> None:
        for name in ("agents", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1")
        for name in ("latent_steps", "max_new_tokens", "temperature", "realign_lambda"):
            if getattr(self, name) < 0:
                raise ConfigError(name, "must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ConfigError("top_p", "must be in (0, 1]")
        super().__post_init__()


class LatentMasMethod:
    """Role agents think in latent space and hand their KV cache on; the judger writes the answer."""

    name = "latent-mas"
    config_class = LatentMasConfig
    dataset_kinds: dict[str, tuple[str, ...]] = {}

    def __init__(self, config: LatentMasConfig) -> None:
        self.config = config

    def run(self, lm: LoadedModel, task: Task, examples: list[Example]) -> Iterator[Outcome]:
        from latentbench.methods.latent_ops import controlled, identity_realignment
        from latentbench.models.latent import realignment

        cfg = self.config
        realign = realignment(lm, cfg.realign_lambda) if cfg.realign else identity_realignment(lm)
        realign = controlled(realign, cfg.control)
        run_batch = _run_latentmas if cfg.protocol == "latentmas" else _run_compact
        used, budget = cfg.agents * cfg.steps_run, cfg.agents * cfg.latent_steps
        max_new = self.resolved(task)["max_new_tokens"]
        for batch_index, start in enumerate(range(0, len(examples), cfg.batch_size)):
            batch = examples[start:start + cfg.batch_size]
            turns, tokens, forwards = run_batch(lm, task, batch, cfg, realign)
            texts = lm.tokenizer.batch_decode(tokens, skip_special_tokens=True)
            for ex, read, text, new in zip(batch, turns, texts, tokens, strict=True):
                # decode() stops at EOS (excluded) or at the budget: a full budget means no EOS came
                yield Outcome(ex, read[0]["prompt"], [text], len(new), forwards, latent_steps=used,
                              latent_budget=budget, artifacts={"batch": batch_index},
                              truncated=[len(new) >= max_new], agent_prompts=read)

    def resolved(self, task: Task) -> dict[str, Any]:
        """Budgets of 0 resolved to the task card's; protocol=compact gives no system message."""
        cfg = self.config
        system = cfg.system_prompt if cfg.protocol == "latentmas" else ""
        return {**config_dict(cfg), "max_new_tokens": cfg.max_new_tokens or task.card.max_new_tokens,
                "system_prompt": system}


# Per question the turns the model read ({"role", "prompt"}, the judger's last), the judger's tokens; forwards
Batch = tuple[list[list[dict[str, str]]], list[list[int]], int]


def agent_roles(cfg: LatentMasConfig) -> list[str]:
    """protocol=latentmas: the latent agents' roles, then the judger's."""
    return [*cycled_roles(cfg.agents, cfg.pipeline_roles), "judger"]


def _run_latentmas(lm: LoadedModel, task: Task, batch: list[Example], cfg: LatentMasConfig,
                   realign: Realignment) -> Batch:
    from latentbench.methods.agents import fresh_turns
    from latentbench.methods.latent_ops import agent_caches, decode
    from latentbench.models.latent import pad_left

    templates, roles = cfg.templates(task.card.answer_kind), agent_roles(cfg)
    turns = [fresh_turns(lm, task, ex, roles, templates, cfg.system_prompt) for ex in batch]
    paths, forwards = agent_caches(lm, [t.ids[:-1] for t in turns], cfg.steps_run, realign,
                                   keep_turns=cfg.control == "none")
    ids, mask = pad_left([t.ids[-1] for t in turns], lm.tokenizer.pad_token_id, lm.device)
    tokens, decoded = decode(lm, paths, ids, mask, cfg.max_new_tokens or task.card.max_new_tokens, cfg.temperature,
                             cfg.top_p)
    read = [[{"role": r, "prompt": text} for r, text in zip(roles, t.texts, strict=True)] for t in turns]
    if paths is None:  # no latent steps: the agents' turns never ran, the judger read its own turn only
        read = [r[-1:] for r in read]
    return read, tokens, forwards + decoded


def _run_compact(lm: LoadedModel, task: Task, batch: list[Example], cfg: LatentMasConfig,
                 realign: Realignment) -> Batch:
    """Ours: the first agent's turn holds the question, later agents get short handoffs, then the solver."""
    from latentbench.methods.agents import agent_prompts
    from latentbench.methods.latent_ops import decode
    from latentbench.models.latent import latent_steps, pad_left, prefill

    pad, roles = lm.tokenizer.pad_token_id, cfg.templates(task.card.answer_kind)
    prompts = [agent_prompts(lm, task, ex, cfg.agents, cfg.pipeline_roles, roles) for ex in batch]
    paths = prefill(lm, *pad_left([p.first for p in prompts], pad, lm.device))
    forwards = 1
    for agent in range(cfg.agents):
        paths, _, _ = latent_steps(lm, paths, cfg.steps_run, realign)
        forwards += cfg.steps_run
        if agent < cfg.agents - 1:
            paths = prefill(lm, *pad_left([p.handoffs[agent] for p in prompts], pad, lm.device), paths=paths)
            forwards += 1
    ids, mask = pad_left([p.solver for p in prompts], pad, lm.device)
    tokens, decoded = decode(lm, paths, ids, mask, cfg.max_new_tokens or task.card.max_new_tokens, cfg.temperature,
                             cfg.top_p)
    return [p.turns() for p in prompts], tokens, forwards + decoded
