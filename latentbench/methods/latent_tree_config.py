"""Config of the ``latent-tree`` method: the one source of its defaults (the CLI reads them from here).

Kept free of torch imports so ``latentbench --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from latentbench.errors import UsageError
from latentbench.methods.agents import DEFAULT_ROLES

KV_DTYPES = ("model", "float32", "float16", "bfloat16")


@dataclass
class LatentTreeConfig:
    agents: int = 3  # latent agents = tree depth below the root
    branches: int = 3  # k: children per node
    latent_steps: int = 4  # m: latent steps per agent
    keep: int = 5  # K: leaves decoded and scored
    latent_temperature: float = 2.0  # τ of the Gaussian branching noise (0 = deterministic); see docs/latent-tree.md
    realign_lambda: float = 1e-3  # ridge λ of the realignment matrix
    max_new_tokens: int = 0  # solver's text budget; 0 = the task card's
    kv_dtype: str = "model"  # dtype of saved KV; "model" keeps replay bit-exact
    seed: int = 0
    pipeline: str = "planner,critic,refiner"  # roles of the latent agents, cycled
    roles: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLES))

    def __post_init__(self) -> None:
        if min(self.agents, self.branches, self.keep) < 1 or self.latent_steps < 0:
            raise UsageError("latent-tree: agents, branches and keep must be >= 1, latent_steps >= 0")
        if self.kv_dtype not in KV_DTYPES:
            raise UsageError(f"--kv-dtype {self.kv_dtype!r} is not one of {', '.join(KV_DTYPES)}")
        if self.latent_temperature < 0:
            raise UsageError("--latent-temperature must be >= 0")
        missing = [r for r in [*self.pipeline_roles, "solver"] if r not in self.roles]
        if missing:
            raise UsageError(f"latent-tree: no prompt for role(s) {', '.join(missing)}")

    @property
    def pipeline_roles(self) -> tuple[str, ...]:
        return tuple(r.strip() for r in self.pipeline.split(",") if r.strip())
