"""Config of the ``latent-tree`` method: the one source of its defaults, types and help (the CLI's
flags are built from it). Kept free of torch imports so ``latentbench --help`` stays fast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from latentbench.config import ConfigError, option
from latentbench.methods.agents import AgentTurnsConfig

KvDtype = Literal["model", "float32", "float16", "bfloat16"]


@dataclass
class LatentTreeConfig(AgentTurnsConfig):
    # Defaults: the tree that gives labels signal on the embedded 0.5B model (the τ table in
    # docs/latent-tree.md); deeper trees (--agents 3) derail its judger.
    agents: int = option(1, "Latent agents = tree depth below the root.")
    branches: int = option(4, "k: children per node.")
    latent_steps: int = option(4, "m: latent steps per agent.")
    keep: int | Literal["all"] = option("all", "K: leaves decoded and scored (top-K by consistency), or all.")
    latent_temperature: float = option(
        0.5, "τ of the Gaussian branching noise (0: no branching diversity); see docs/latent-tree.md.")
    realign_lambda: float = option(1e-3, "Ridge λ of the realignment matrix.")
    max_new_tokens: int = option(0, "Judger's (compact: solver's) text budget per leaf (0: the task card's).")
    kv_dtype: KvDtype = option("model", "dtype of saved KV; model keeps replay bit-exact.")
    prm: str | None = option(None, "Directory of a trained Latent-PRM (latentbench train prm): scores every node.")
    select: Literal["majority", "consistency", "prm", "oracle"] = option(
        "majority", "Final pick among decoded leaves: majority answer, most consistent leaf, best PRM score, or "
                    "oracle (a correct leaf if any: the upper bound).")
    beam: int | None = option(None, "Keep the B best paths by PRM score at every level (needs prm); none: all.")
    batch_size: int = option(1, "Questions whose kept leaves are decoded in one batch (left padded): faster, "
                                "but replay is bit-exact only at 1 (batched kernels round differently).")
    seed: int = option(0, "Seed of the branching noise (set by the run's --seed).")

    def __post_init__(self) -> None:
        for name in ("agents", "branches", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1")
        if self.keep != "all" and (not isinstance(self.keep, int) or self.keep < 1):
            raise ConfigError("keep", "must be >= 1 or all")
        if self.latent_steps < 0:
            raise ConfigError("latent_steps", "must be >= 0")
        if self.latent_temperature < 0:
            raise ConfigError("latent_temperature", "must be >= 0")
        if self.beam is not None and self.beam < 1:
            raise ConfigError("beam", "must be >= 1 (or none)")
        if (self.select == "prm" or self.beam is not None) and not self.prm:
            raise ConfigError("prm", f"needed by {'select=prm' if self.select == 'prm' else 'beam'} (a trained PRM dir)")
        if self.select not in ("majority", "consistency", "prm", "oracle"):
            raise ConfigError("select", "expected one of majority, consistency, prm, oracle")
        if self.kv_dtype not in get_args(KvDtype):
            raise ConfigError("kv_dtype", f"expected one of {', '.join(get_args(KvDtype))}")
        super().__post_init__()
