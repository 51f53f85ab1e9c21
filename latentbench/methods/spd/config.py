"""Config of the ``spd`` method: the one source of its defaults, types and help (no torch here)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from latentbench.config import ConfigError, option

JUDGES = ("none", "always", "learned")


@dataclass
class SpdConfig:
    draft: str = option("layers:20", "Draft: layers:L (the target exited early after its first L layers, "
                                     "self-speculative) or model (the --draft-model below).")
    draft_model: str | None = option(None, "A separate draft model (embedded name, path or Hub id; sets draft=model): "
                                           "it must share the target's tokenizer.")
    gamma: int = option(4, "γ: draft tokens proposed per verification.")
    judge: Literal["none", "always", "learned"] = option(
        "none", "At a mismatch: none rejects (standard SD, lossless), always accepts the draft token, learned "
                "accepts it when the judge's score clears threshold.")
    judge_path: str | None = option(None, "judge=learned: a `latentbench train spd-judge` output directory.")
    threshold: float = option(0.5, "judge=learned: accept a mismatched draft token when score >= threshold.")
    max_new_tokens: int = option(0, "Text budget per answer (0: the task card's).")
    temperature: float = option(0.0, "0: greedy verification; > 0: standard rejection sampling.")
    top_p: float = option(1.0, "Nucleus mass of target and draft distributions (with temperature > 0).")
    batch_size: int = option(8, "Questions decoded together (left padded, caches compacted every step).")
    system_prompt: str = option("", "System prompt (empty: the chat template's default).")
    mine: int = option(0, "generate: AutoJudge labels for up to N rejected mismatches per question (0: none): "
                          "swap in the draft token, continue greedily, important if the answer changes.")
    seed: int = option(0, "Seed of sampling and of which mismatches are mined (set by the run's --seed).")

    def __post_init__(self) -> None:
        if self.draft_model:
            self.draft = "model"
        if self.draft != "model" and not re.fullmatch(r"layers:[1-9]\d*", self.draft):
            raise ConfigError("draft", f"expected layers:L (L >= 1) or model, got {self.draft!r}")
        if self.draft == "model" and not self.draft_model:
            raise ConfigError("draft_model", "needed by draft=model (the draft's model name, path or Hub id)")
        for name in ("gamma", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1")
        if self.judge not in JUDGES:
            raise ConfigError("judge", f"expected one of {', '.join(JUDGES)}")
        if self.judge == "learned" and not self.judge_path:
            raise ConfigError("judge_path", "needed by judge=learned (a trained spd-judge directory)")
        if not 0 <= self.threshold <= 1:
            raise ConfigError("threshold", "must be in [0, 1]")
        if self.max_new_tokens < 0 or self.mine < 0:
            raise ConfigError("max_new_tokens" if self.max_new_tokens < 0 else "mine", "must be >= 0")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError("temperature" if self.temperature < 0 else "top_p", "temperature >= 0, 0 < top_p <= 1")

    @property
    def draft_layers(self) -> int | None:
        return int(self.draft.split(":")[1]) if self.draft.startswith("layers:") else None
