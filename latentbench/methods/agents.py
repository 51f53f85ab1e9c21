"""Role agents that share one KV cache: their prompts and how each continues the conversation.

Two turn structures. The compact protocol (ours; latent-tree and ``latent-mas protocol=compact``): the
first agent's turn holds the question; each later agent appends a short user turn (a "handoff") to the
previous agent's latent thoughts; the final solver's handoff asks for the written answer. The
reference's protocol (``latent-mas``, ``text-mas``): every agent, the judger included, gets a fresh chat
(system + its role prompt around the question), see ``fresh_turns``. Role prompts live in the configs
(compact: ``DEFAULT_ROLES``; reference: ``methods/prompts.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from latentbench.config import ConfigError, option
from latentbench.methods.generation import chat_text
from latentbench.methods.prompts import ROLES, SYSTEM, fill, latent_roles, question_text

if TYPE_CHECKING:
    import torch

    from latentbench.models import LoadedModel
    from latentbench.tasks import Example, Task

DEFAULT_ROLES: dict[str, str] = {
    "planner": "You are the planner. Think about how to solve the problem below, step by step, "
               "and make a plan. Do not give the final answer yet.",
    "critic": "You are the critic. Check the plan so far for mistakes and missing steps.",
    "refiner": "You are the refiner. Improve the plan using the critique and work out the steps.",
    "solver": "You are the solver. Using the reasoning above, solve the problem and state the final "
              "answer exactly in the requested format.",
}
DEFAULT_PIPELINE = "planner,critic,refiner"


def pipeline_roles(pipeline: str) -> tuple[str, ...]:
    """``"planner,critic"`` -> ("planner", "critic")."""
    return tuple(r.strip() for r in pipeline.split(",") if r.strip())


def cycled_roles(agents: int, pipeline: tuple[str, ...]) -> list[str]:
    """Agent i takes role ``pipeline[i % len(pipeline)]``."""
    return [pipeline[i % len(pipeline)] for i in range(agents)]


def check_roles(pipeline: str, roles: dict[str, str], final: str = "solver") -> None:
    """Every role of the pipeline, and the ``final`` one (who writes the answer), needs a prompt in ``roles``."""
    if not pipeline_roles(pipeline):
        raise ConfigError("pipeline", "names no role (expected e.g. planner,critic,refiner)")
    missing = [r for r in dict.fromkeys([*pipeline_roles(pipeline), final]) if r not in roles]
    if missing:
        raise ConfigError("pipeline", f"no prompt for role(s) {', '.join(missing)} "
                                      f"(roles has {', '.join(roles)}; add them with roles)")


def check_protocol_roles(protocol: str, pipeline: str, overrides: dict[str, str]) -> None:
    """The role checks of a ``protocol`` config: every role has a prompt (compact: the solver's too;
    latentmas: the judger's too), and a latentmas override holds the ``{question}`` it is filled with."""
    if protocol == "compact":
        check_roles(pipeline, {**DEFAULT_ROLES, **overrides})
        return
    check_roles(pipeline, {**dict.fromkeys(ROLES, ""), **overrides}, final="judger")
    for role, text in overrides.items():
        if "{question}" not in text:
            raise ConfigError("roles", f"{role}: needs {{question}} (protocol=latentmas puts it in every turn)")


@dataclass
class AgentTurnsConfig:
    """Config fields of the latent multi-agent methods (latent-mas, latent-tree): how the turns are built."""

    protocol: Literal["latentmas", "compact"] = option(
        "latentmas", "latentmas: every agent re-prompted with the question behind the previous caches, the "
                     "judger reasons then answers (the reference); compact: the question once, short handoff "
                     "turns, a short solver turn (ours).")
    prompt: Literal["sequential", "hierarchical"] = option(
        "sequential", "Role prompt set of protocol=latentmas (the reference's --prompt).")
    pipeline: str = option(DEFAULT_PIPELINE, "Roles of the latent agents, comma-separated, cycled.")
    roles: dict[str, str] = option(
        help="Role name -> prompt, over the protocol's own (latentmas: a template with {question}, the judger's "
             "included; compact: the solver's included).", factory=dict)
    system_prompt: str = option(SYSTEM, "System message of each latentmas turn (the reference's; empty: none).")
    control: Literal["off", "noise", "none"] = option(
        "off", "Control run: noise = every latent input replaced by a random vector of the same norm; none = "
               "no latent steps, the agents' turns still in the cache (see docs/latent-tree.md).")

    def __post_init__(self) -> None:
        check_protocol_roles(self.protocol, self.pipeline, self.roles)
        if self.control not in ("off", "noise", "none"):
            raise ConfigError("control", "expected one of off, noise, none")

    @property
    def steps_run(self) -> int:
        """Latent steps per agent actually run (0 under control=none)."""
        return 0 if self.control == "none" else self.latent_steps  # type: ignore[attr-defined]

    @property
    def pipeline_roles(self) -> tuple[str, ...]:
        return pipeline_roles(self.pipeline)

    def templates(self, answer_kind: str) -> dict[str, str]:
        """Role -> prompt for this protocol and the task's answer kind."""
        return role_templates(self.protocol, self.prompt, answer_kind, self.roles)


@dataclass
class AgentPrompts:
    """Token ids of every turn: the first agent's (with the question), each later handoff, the solver's."""

    roles: list[str]  # role of latent agent i (i = 0 .. agents-1)
    first: list[int]
    handoffs: list[list[int]]  # handoffs[i] starts latent agent i+1's turn
    solver: list[int]
    first_text: str
    solver_text: str
    handoff_texts: list[str] = field(default_factory=list)

    def turns(self, solver: str = "solver") -> list[dict[str, str]]:
        """Every turn's text with its role, in the order the model reads them (the answering role last)."""
        texts = [self.first_text, *self.handoff_texts, self.solver_text]
        return [{"role": role, "prompt": text} for role, text in zip([*self.roles, solver], texts, strict=True)]


def _continuation(lm: LoadedModel, history: list[dict[str, str]], message: str) -> str:
    """The text a chat template adds for a new user turn after an (empty) assistant turn, ending with
    the assistant prefix: rendered as the difference of two template renderings, so it fits any model."""
    tok = lm.tokenizer
    if not tok.chat_template:
        return f"\n\n{message}\n\n"
    before = tok.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
    after = tok.apply_chat_template([*history, {"role": "assistant", "content": ""}, {"role": "user", "content": message}],
                                    tokenize=False, add_generation_prompt=True)
    # Some templates strip/alter empty assistant turns; fall back to plain text then.
    return after[len(before):] if after.startswith(before) else f"\n\n{message}\n\n"


def agent_prompts(lm: LoadedModel, task: Task, example: Example, agents: int, pipeline: tuple[str, ...],
                  roles: dict[str, str]) -> AgentPrompts:
    """Agent i takes role ``pipeline[i % len(pipeline)]``; the solver writes the text answer."""
    names = cycled_roles(agents, pipeline)
    question = task.prompt(example)
    history = [{"role": "user", "content": f"{roles[names[0]]}\n\n{question}"}]
    if lm.tokenizer.chat_template:
        first = lm.tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
    else:
        first = history[0]["content"] + "\n\n"
    handoffs = []
    for name in names[1:]:
        handoffs.append(_continuation(lm, history, roles[name]))
        history = [*history, {"role": "assistant", "content": ""}, {"role": "user", "content": roles[name]}]
    solver = _continuation(lm, history, roles["solver"])
    return AgentPrompts(names, token_ids(lm, first), [token_ids(lm, h) for h in handoffs], token_ids(lm, solver),
                        first, solver, handoffs)


@dataclass
class FreshTurns:
    """The reference's turns: one fresh chat per agent, the judger's last (rendered text and token ids)."""

    texts: list[str]
    ids: list[list[int]]


def token_ids(lm: LoadedModel, text: str) -> list[int]:
    return lm.tokenizer(text, add_special_tokens=False)["input_ids"]


def fresh_turns(lm: LoadedModel, task: Task, example: Example, roles: list[str], templates: dict[str, str],
                system: str) -> FreshTurns:
    """Each of ``roles`` (the judger last) gets the question under its role prompt, in a chat of its own."""
    question = question_text(task, example)
    texts = [chat_text(lm, fill(templates[role], question=question), system or None) for role in roles]
    return FreshTurns(texts, [token_ids(lm, text) for text in texts])


def role_templates(protocol: str, prompt: str, answer_kind: str, overrides: dict[str, str]) -> dict[str, str]:
    """Role -> prompt for a protocol (latentmas: the reference's set for the answer kind), with overrides."""
    base = DEFAULT_ROLES if protocol == "compact" else latent_roles(prompt, answer_kind)
    return {**base, **overrides}


def protocol_prompts(lm: LoadedModel, task: Task, example: Example, *, protocol: str, agents: int,
                     pipeline: tuple[str, ...], templates: dict[str, str], system: str) -> AgentPrompts:
    """One question's turns in the ``AgentPrompts`` shape: compact (first turn, handoffs, solver), or the
    reference's fresh turns (agent 0's turn first, each later agent's turn in place of a handoff, the
    judger's turn in place of the solver's)."""
    if protocol == "compact":
        return agent_prompts(lm, task, example, agents, pipeline, templates)
    roles = cycled_roles(agents, pipeline)
    turns = fresh_turns(lm, task, example, [*roles, "judger"], templates, system)
    return AgentPrompts(roles, turns.ids[0], turns.ids[1:agents], turns.ids[agents], turns.texts[0], turns.texts[-1],
                        turns.texts[1:agents])


def as_batch(ids: list[int], rows: int, device: torch.device) -> torch.Tensor:
    """The same token ids for ``rows`` paths: [rows, n]."""
    import torch

    return torch.tensor([ids], dtype=torch.long, device=device).expand(rows, -1).contiguous()
