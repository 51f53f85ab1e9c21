"""Shared training infrastructure: a seeded, resumable accelerate loop over store datasets.

    from latentbench.train import TrainConfig, TrainData, run_training, load_checkpoint

A trainer (see :class:`~latentbench.train.loop.Trainer`) names its table, builds a module, collates
rows into batches and returns a loss; ``run_training`` does the rest. Exports resolve lazily, so
importing this package (or ``TrainConfig`` for ``--help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from latentbench.train.advantages import grpo_advantages, reinforce_advantages
    from latentbench.train.checkpoint import load_checkpoint
    from latentbench.train.config import TrainConfig
    from latentbench.train.data import TrainData
    from latentbench.train.loop import Trainer, evaluate, run_training
    from latentbench.train.run_dir import TrainResult

_EXPORTS = {
    "TrainConfig": "config", "TrainData": "data", "Trainer": "loop", "run_training": "loop",
    "evaluate": "loop", "TrainResult": "run_dir", "load_checkpoint": "checkpoint",
    "grpo_advantages": "advantages", "reinforce_advantages": "advantages",
}
__all__ = ["TrainConfig", "TrainData", "TrainResult", "Trainer", "evaluate", "grpo_advantages", "load_checkpoint",
           "reinforce_advantages", "run_training"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"latentbench.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'latentbench.train' has no attribute {name!r}")
