"""Config of ``gcache``: how the agent graph is built and run (shared by the method and its trainer), then
the method's own fields. No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from latentbench.config import ConfigError, option
from latentbench.methods.prompts import SYSTEM

GRAPHS = ("learned", "FullConnected", "Chain", "Star", "Random", "Debate", "Layered", "DirectAnswer")
Graph = Literal["learned", "FullConnected", "Chain", "Star", "Random", "Debate", "Layered", "DirectAnswer"]
Mode = Literal["local", "api", "hybrid"]


@dataclass
class GraphRunConfig:
    """The agents, their graph and their latent turns (what a trained checkpoint is used with)."""

    graph: Graph = option(
        "learned", "learned: edges sampled from the GCN's probabilities (G-Designer); or a fixed baseline: "
                   "FullConnected (i -> j for every i < j), Chain, Star (agent 0 -> every other), Random (each edge "
                   "with p 0.5), Layered (first half -> second half), Debate (the agents, then the same roles again, "
                   "each reading every first-round agent), DirectAnswer (one agent).")
    agents: int = option(4, "N: role agents in the graph (roles cycled from the task's role set).")
    roles: str = option("", "Roles, comma-separated, cycled (empty: the set for the task's answer kind; see "
                            "`latentbench.methods.gcache.roles`).")
    latent_steps: int = option(4, "m: latent steps each agent runs after its turn (LatentMAS realignment).")
    latent_only: bool = option(False, "Hand on only latent positions (false: the agent's turn and its latents).")
    edge_temperature: float = option(1.0, "T in p(edge) = sigmoid(logit / T).")
    gcn_hidden: int = option(32, "Width of the two GCN layers.")
    embed_dim: int = option(16, "Width of the MLP's node embeddings Z (edge logits Z·Zᵀ).")
    realign: bool = option(True, "Map hidden states with W_a (LatentMAS); off: identity, rescaled.")
    realign_lambda: float = option(1e-3, "Ridge λ of W_a.")
    max_new_tokens: int = option(0, "Decision node's text budget (0: the task card's).")
    answer_temperature: float = option(0.0, "Decision node's sampling temperature (0: greedy).")
    top_p: float = option(0.95, "Decision node's nucleus mass when sampling.")
    system_prompt: str = option(SYSTEM, "System message of every turn (empty: none).")
    control: Literal["off", "noise", "none"] = option(
        "off", "noise: every latent input replaced by a random vector of its norm; none: no latent steps (the "
               "agents' turns still pass along the edges).")
    batch_size: int = option(8, "Questions run together (each with its own graph).")
    seed: int = option(0, "Seed of edge sampling (set by the run's --seed).")

    def __post_init__(self) -> None:
        if self.graph not in GRAPHS:
            raise ConfigError("graph", f"expected one of {', '.join(GRAPHS)}")
        if self.control not in ("off", "noise", "none"):
            raise ConfigError("control", "expected one of off, noise, none")
        for name in ("agents", "batch_size", "gcn_hidden", "embed_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1")
        for name in ("latent_steps", "max_new_tokens", "answer_temperature", "realign_lambda"):
            if getattr(self, name) < 0:
                raise ConfigError(name, "must be >= 0")
        if not self.edge_temperature > 0:
            raise ConfigError("edge_temperature", "must be > 0")
        if not 0 < self.top_p <= 1:
            raise ConfigError("top_p", "must be in (0, 1]")
        if self.latent_only and self.latent_steps == 0:
            raise ConfigError("latent_only", "needs latent_steps >= 1 (there would be nothing to hand on)")

    @property
    def steps_run(self) -> int:
        """Latent steps per agent actually run (0 under control=none)."""
        return 0 if self.control == "none" else self.latent_steps


@dataclass
class GCacheConfig(GraphRunConfig):
    checkpoint: str | None = option(None, "A `latentbench train gcache` output dir (GCN, MLP, cache fuser); none: "
                                          "untrained (random GCN, identity fuser).")
    edge_decision: Literal["sample", "threshold"] = option(
        "sample", "learned graph: sample each edge (as trained), or keep those with p >= 0.5.")
    mode: Mode = option(
        "local", "local: everything on the local model, caches passed; api: the agents on the local model, each "
                 "writing its text, and the decision node through an OpenAI-compatible endpoint reading those texts "
                 "(caches cannot travel there); hybrid: local with caches, the endpoint refines the final text.")
    agent_tokens: int = option(96, "mode=api: text budget of each local agent's written note.")
    api_base: str = option("", "mode=api|hybrid: base URL of an OpenAI-compatible endpoint (e.g. http://localhost:8000/v1).")
    api_model: str = option("", "mode=api|hybrid: the endpoint's model name.")
    api_key_env: str = option("OPENAI_API_KEY", "mode=api|hybrid: environment variable holding the API key.")
    api_max_tokens: int = option(512, "mode=api|hybrid: the endpoint's text budget.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in ("local", "api", "hybrid"):
            raise ConfigError("mode", "expected one of local, api, hybrid")
        if self.edge_decision not in ("sample", "threshold"):
            raise ConfigError("edge_decision", "expected sample or threshold")
        if self.mode != "local":
            for name in ("api_base", "api_model"):
                if not getattr(self, name):
                    raise ConfigError(name, f"mode={self.mode} needs it (an OpenAI-compatible endpoint)")
        if self.agent_tokens < 1 or self.api_max_tokens < 1:
            raise ConfigError("agent_tokens" if self.agent_tokens < 1 else "api_max_tokens", "must be >= 1")
