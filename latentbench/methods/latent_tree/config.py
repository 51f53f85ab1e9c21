"""Config of the ``latent-tree`` method: the one source of its defaults, types and help (the CLI's
flags are built from it). Kept free of torch imports so ``latentbench --help`` stays fast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from latentbench.config import ConfigError, option
from latentbench.methods.agents import DEFAULT_PIPELINE, DEFAULT_ROLES, check_roles, pipeline_roles

KvDtype = Literal["model", "float32", "float16", "bfloat16"]


@dataclass
class LatentTreeConfig:
    agents: int = option(3, "Latent agents = tree depth below the root.")
    branches: int = option(3, "k: children per node.")
    latent_steps: int = option(4, "m: latent steps per agent.")
    keep: int = option(5, "K: leaves decoded and scored (top-K by consistency).")
    latent_temperature: float = option(
        2.0, "τ of the Gaussian branching noise (0: no branching diversity); see docs/latent-tree.md.")
    realign_lambda: float = option(1e-3, "Ridge λ of the realignment matrix.")
    max_new_tokens: int = option(0, "Solver's text budget (0: the task card's).")
    kv_dtype: KvDtype = option("model", "dtype of saved KV; model keeps replay bit-exact.")
    seed: int = option(0, "Seed of the branching noise (set by the run's --seed).")
    pipeline: str = option(DEFAULT_PIPELINE, "Roles of the latent agents, comma-separated, cycled.")
    roles: dict[str, str] = option(help="Role name -> prompt (the solver's included).", factory=lambda: dict(DEFAULT_ROLES))

    def __post_init__(self) -> None:
        for name in ("agents", "branches", "keep"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1")
        if self.latent_steps < 0:
            raise ConfigError("latent_steps", "must be >= 0")
        if self.latent_temperature < 0:
            raise ConfigError("latent_temperature", "must be >= 0")
        if self.kv_dtype not in get_args(KvDtype):
            raise ConfigError("kv_dtype", f"expected one of {', '.join(get_args(KvDtype))}")
        check_roles(self.pipeline, self.roles)

    @property
    def pipeline_roles(self) -> tuple[str, ...]:
        return pipeline_roles(self.pipeline)
