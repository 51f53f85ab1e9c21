"""Config of the ``latent-tree`` method: the one source of its defaults, types and help (the CLI's
flags are built from it). Kept free of torch imports so ``latentbench --help`` stays fast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from latentbench.config import ConfigError, option
from latentbench.methods.agents import (
    DEFAULT_PIPELINE,
    DEFAULT_ROLES,
    check_roles,
    pipeline_roles,
    role_templates,
)
from latentbench.methods.prompts import ROLES, SYSTEM

KvDtype = Literal["model", "float32", "float16", "bfloat16"]


@dataclass
class LatentTreeConfig:
    protocol: Literal["latentmas", "compact"] = option(
        "latentmas", "Turns as latent-mas: latentmas (each agent re-prompted with the question, leaves decoded "
                     "by the judger, who reasons then answers) or compact (handoffs, a short solver turn).")
    prompt: Literal["sequential", "hierarchical"] = option("sequential", "Role prompt set of protocol=latentmas.")
    agents: int = option(3, "Latent agents = tree depth below the root.")
    branches: int = option(3, "k: children per node.")
    latent_steps: int = option(4, "m: latent steps per agent.")
    keep: int | Literal["all"] = option(5, "K: leaves decoded and scored (top-K by consistency), or all.")
    latent_temperature: float = option(
        2.0, "τ of the Gaussian branching noise (0: no branching diversity); see docs/latent-tree.md.")
    realign_lambda: float = option(1e-3, "Ridge λ of the realignment matrix.")
    max_new_tokens: int = option(0, "Solver's text budget (0: the task card's).")
    kv_dtype: KvDtype = option("model", "dtype of saved KV; model keeps replay bit-exact.")
    seed: int = option(0, "Seed of the branching noise (set by the run's --seed).")
    pipeline: str = option(DEFAULT_PIPELINE, "Roles of the latent agents, comma-separated, cycled.")
    roles: dict[str, str] = option(
        help="Role name -> prompt, over the protocol's own (latentmas: a template with {question}, the judger's "
             "included; compact: the solver's included).", factory=dict)
    system_prompt: str = option(SYSTEM, "System message of each latentmas turn (the reference's; empty: none).")

    def __post_init__(self) -> None:
        for name in ("agents", "branches"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1")
        if self.keep != "all" and (not isinstance(self.keep, int) or self.keep < 1):
            raise ConfigError("keep", "must be >= 1 or all")
        if self.latent_steps < 0:
            raise ConfigError("latent_steps", "must be >= 0")
        if self.latent_temperature < 0:
            raise ConfigError("latent_temperature", "must be >= 0")
        if self.kv_dtype not in get_args(KvDtype):
            raise ConfigError("kv_dtype", f"expected one of {', '.join(get_args(KvDtype))}")
        if self.protocol == "compact":
            check_roles(self.pipeline, {**DEFAULT_ROLES, **self.roles})
        else:
            check_roles(self.pipeline, {**dict.fromkeys(ROLES, ""), **self.roles}, final="judger")

    @property
    def pipeline_roles(self) -> tuple[str, ...]:
        return pipeline_roles(self.pipeline)

    def templates(self, answer_kind: str) -> dict[str, str]:
        return role_templates(self.protocol, self.prompt, answer_kind, self.roles)
