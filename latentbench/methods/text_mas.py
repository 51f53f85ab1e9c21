"""``text-mas``: the LatentMAS role agents exchanging written text instead of caches (its TextMAS baseline).

As the reference runs it (Gen-Verse/LatentMAS ``methods/text_mas.py``): every agent, the judger
included, gets a fresh chat (system message + its role prompt around the question); where the prompt
has ``{context}`` it gets the previous agents' texts, each written as ``[Name]:\\n<text>\\n\\n`` and the
whole sliced to ``context_length`` characters. Each agent writes its text; the judger's is the answer.
Each agent's turn is one batched ``generate`` call across the questions of a batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from latentbench.config import ConfigError, config_dict, option
from latentbench.methods.agents import DEFAULT_PIPELINE, check_roles, cycled_roles, pipeline_roles
from latentbench.methods.base import Outcome
from latentbench.methods.generation import chat_text, generate
from latentbench.methods.prompts import ROLES, SYSTEM, TEXT_NAMES, fill, question_text, text_roles

if TYPE_CHECKING:
    from latentbench.models import LoadedModel
    from latentbench.tasks import Example, Task


@dataclass
class TextMasConfig:
    prompt: Literal["sequential", "hierarchical"] = option(
        "sequential", "Role prompt set (the reference's --prompt); hierarchical agents see only the question.")
    agents: int = option(3, "Text agents before the judger.")
    agent_max_new_tokens: int = option(0, "Text budget of each agent before the judger (0: the judger's, as "
                                          "in the reference).")
    max_new_tokens: int = option(0, "Judger's text budget (0: the task card's).")
    temperature: float = option(0.0, "Sampling temperature of every agent (0: greedy; the reference samples at 0.6).")
    top_p: float = option(0.95, "Nucleus mass when sampling (the reference's 0.95).")
    context_length: int = option(-1, "Slice end applied to the previous agents' text (the reference's "
                                     "--text_mas_context_length; its default -1 drops the last character, a newline).")
    batch_size: int = option(8, "Questions per batched generate call.")
    pipeline: str = option(DEFAULT_PIPELINE, "Roles of the agents before the judger, comma-separated, cycled.")
    roles: dict[str, str] = option(help="Role name -> prompt template ({question}, {context}), over the "
                                        "reference's (the judger's included).", factory=dict)
    system_prompt: str = option(SYSTEM, "System message of every turn (the reference's; empty: none).")

    def __post_init__(self) -> None:
        for name in ("agents", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1")
        for name in ("agent_max_new_tokens", "max_new_tokens", "temperature"):
            if getattr(self, name) < 0:
                raise ConfigError(name, "must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ConfigError("top_p", "must be in (0, 1]")
        check_roles(self.pipeline, {**dict.fromkeys(ROLES, ""), **self.roles}, final="judger")
        for role, text in self.roles.items():
            if "{question}" not in text:
                raise ConfigError("roles", f"{role}: needs {{question}} (every agent gets the question)")

    def templates(self, answer_kind: str) -> dict[str, str]:
        return {**text_roles(self.prompt, answer_kind), **self.roles}


class TextMasMethod:
    """Role agents write text in turn, each reading the previous agents' texts; the judger answers."""

    name = "text-mas"
    config_class = TextMasConfig
    dataset_kinds: dict[str, tuple[str, ...]] = {}

    def __init__(self, config: TextMasConfig) -> None:
        self.config = config

    def run(self, lm: LoadedModel, task: Task, examples: list[Example]) -> Iterator[Outcome]:
        cfg = self.config
        for batch_index, start in enumerate(range(0, len(examples), cfg.batch_size)):
            yield from self._batch(lm, task, examples[start:start + cfg.batch_size], batch_index)

    def resolved(self, task: Task) -> dict[str, Any]:
        """Budgets of 0 resolved: the judger's to the task card's, each agent's to the judger's."""
        cfg = self.config
        judger = cfg.max_new_tokens or task.card.max_new_tokens
        return {**config_dict(cfg), "max_new_tokens": judger, "agent_max_new_tokens": cfg.agent_max_new_tokens or judger}

    def _batch(self, lm: LoadedModel, task: Task, batch: list[Example], batch_index: int) -> Iterator[Outcome]:
        cfg, budgets = self.config, self.resolved(task)
        templates, names = cfg.templates(task.card.answer_kind), TEXT_NAMES[cfg.prompt]
        questions = [question_text(task, ex) for ex in batch]
        contexts = [""] * len(batch)  # previous agents' texts, as the reference formats them
        agent_tokens, agents_truncated, forwards = [0] * len(batch), [0] * len(batch), 0
        read: list[list[dict[str, str]]] = [[] for _ in batch]  # every turn each question's agents read
        for role in cycled_roles(cfg.agents, pipeline_roles(cfg.pipeline)):
            prompts = self._prompts(lm, templates[role], questions, contexts)
            gen = generate(lm, prompts, max_new_tokens=budgets["agent_max_new_tokens"], temperature=cfg.temperature,
                           top_p=cfg.top_p)
            forwards += gen.forward_passes
            for row, (texts, tokens) in enumerate(zip(gen.texts, gen.tokens, strict=True)):
                read[row].append({"role": role, "prompt": prompts[row]})
                contexts[row] += f"[{names.get(role, role.capitalize())}]:\n{texts[0].strip()}\n\n"
                agent_tokens[row] += tokens
                agents_truncated[row] += gen.truncated[row][0]
        prompts = self._prompts(lm, templates["judger"], questions, contexts)
        gen = generate(lm, prompts, max_new_tokens=budgets["max_new_tokens"], temperature=cfg.temperature,
                       top_p=cfg.top_p)
        forwards += gen.forward_passes
        for row, ex in enumerate(batch):
            # The judger's prompt holds the question and every agent's text: the whole exchange.
            yield Outcome(ex, prompts[row], [gen.texts[row][0].strip()], agent_tokens[row] + gen.tokens[row], forwards,
                          metrics={"agent_tokens": agent_tokens[row], "judger_tokens": gen.tokens[row],
                                   "agents_truncated": agents_truncated[row]},
                          artifacts={"batch": batch_index, "agent_texts": contexts[row]},
                          truncated=gen.truncated[row], agent_prompts=[*read[row], {"role": "judger", "prompt": prompts[row]}])

    def _prompts(self, lm: LoadedModel, template: str, questions: list[str], contexts: list[str]) -> list[str]:
        cfg = self.config
        return [chat_text(lm, fill(template, question=q, context=c[:cfg.context_length]), cfg.system_prompt or None)
                for q, c in zip(questions, contexts, strict=True)]
