"""``cot``: the plain text chain-of-thought baseline every table needs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from latentbench.config import ConfigError, config_dict, option
from latentbench.methods.base import Outcome
from latentbench.methods.generation import chat_text, generate

if TYPE_CHECKING:
    from latentbench.models import LoadedModel
    from latentbench.tasks import Example, Task


@dataclass
class CotConfig:
    max_new_tokens: int = option(0, "Text budget per answer (0: the task card's).")
    batch_size: int = option(8, "Prompts per batched generate call.")
    temperature: float = option(0.0, "Sampling temperature (0: greedy).")
    top_p: float = option(1.0, "Nucleus sampling mass (with temperature > 0).")
    num_samples: int = option(1, "Samples per question for pass@k (> 1 needs temperature > 0).")
    system_prompt: str = option("", "System prompt (empty: the chat template's default).")

    def __post_init__(self) -> None:
        for name in ("batch_size", "num_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1")
        if self.max_new_tokens < 0:
            raise ConfigError("max_new_tokens", "must be >= 0")
        if self.num_samples > 1 and self.temperature <= 0:
            raise ConfigError("num_samples", "> 1 needs temperature > 0 (greedy samples are identical)")


class CotMethod:
    """Plain text chain of thought: one chat turn, the model writes its reasoning and answer."""

    name = "cot"
    config_class = CotConfig
    dataset_kinds: dict[str, tuple[str, ...]] = {}

    def __init__(self, config: CotConfig) -> None:
        self.config = config

    def resolved(self, task: Task) -> dict[str, Any]:
        return {**config_dict(self.config), "max_new_tokens": self.config.max_new_tokens or task.card.max_new_tokens}

    def run(self, lm: LoadedModel, task: Task, examples: list[Example]) -> Iterator[Outcome]:
        cfg = self.config
        max_new = self.resolved(task)["max_new_tokens"]
        for batch_index, start in enumerate(range(0, len(examples), cfg.batch_size)):
            batch = examples[start:start + cfg.batch_size]
            prompts = [chat_text(lm, task.prompt(ex), cfg.system_prompt or None) for ex in batch]
            gen = generate(lm, prompts, max_new_tokens=max_new, temperature=cfg.temperature, top_p=cfg.top_p,
                           num_samples=cfg.num_samples)
            for ex, prompt, texts, tokens, cut in zip(batch, prompts, gen.texts, gen.tokens, gen.truncated, strict=True):
                yield Outcome(ex, prompt, texts, tokens, gen.forward_passes, artifacts={"batch": batch_index},
                              truncated=cut)
