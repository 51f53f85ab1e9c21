"""``cot``: the plain text chain-of-thought baseline every table needs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from latentbench.errors import UsageError
from latentbench.methods.base import Outcome
from latentbench.methods.generation import chat_text, generate

if TYPE_CHECKING:
    from latentbench.models import LoadedModel
    from latentbench.tasks import Example, Task


@dataclass
class CotConfig:
    max_new_tokens: int = 0  # 0: the task card's max_new_tokens
    batch_size: int = 8  # prompts per batched generate call
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    num_samples: int = 1  # > 1 samples per question (needs temperature > 0) for pass@k
    system_prompt: str = ""  # empty: the chat template's default

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.num_samples < 1 or self.max_new_tokens < 0:
            raise UsageError("cot: batch_size and num_samples must be >= 1, max_new_tokens >= 0")
        if self.num_samples > 1 and self.temperature <= 0:
            raise UsageError("cot: num_samples > 1 needs temperature > 0 (greedy samples are identical)")


class CotMethod:
    name = "cot"

    def __init__(self, config: CotConfig) -> None:
        self.config = config

    def run(self, lm: LoadedModel, task: Task, examples: list[Example]) -> Iterator[Outcome]:
        cfg = self.config
        max_new = cfg.max_new_tokens or task.card.max_new_tokens
        for batch_index, start in enumerate(range(0, len(examples), cfg.batch_size)):
            batch = examples[start:start + cfg.batch_size]
            prompts = [chat_text(lm, task.prompt(ex), cfg.system_prompt or None) for ex in batch]
            gen = generate(lm, prompts, max_new_tokens=max_new, temperature=cfg.temperature, top_p=cfg.top_p,
                           num_samples=cfg.num_samples)
            for ex, prompt, texts, tokens in zip(batch, prompts, gen.texts, gen.tokens, strict=True):
                yield Outcome(ex, prompt, texts, tokens, gen.forward_passes, artifacts={"batch": batch_index})
