"""``TrainConfig``: the fields every trainer shares. A trainer's own config subclasses it (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass

from latentbench.config import ConfigError, option


@dataclass
class TrainConfig:
    max_steps: int = option(100, "optimizer steps in total (raise it on a finished run to train further)")
    batch_size: int = option(16, "training rows per optimizer step")
    learning_rate: float = option(1e-3, "AdamW learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    grad_clip: float | None = option(1.0, "clip the gradient norm to this; none: no clipping")
    val_fraction: float = option(0.1, "share of question ids held out for validation")
    eval_every: int = option(50, "validation loss every N steps (and at the end)")
    save_every: int = option(50, "resume point every N steps (and at the end)")
    limit: int | None = option(None, "train on the first N question ids only (sorted)")
    seed: int = option(0, "seed of initialisation, batch order and every random draw")
    device: str = option("cpu", "cpu or cuda (pick GPUs with CUDA_VISIBLE_DEVICES; several: accelerate launch)")

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "eval_every", "save_every"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("limit", "must be >= 1 (or none)")
        if not self.learning_rate > 0:
            raise ConfigError("learning_rate", "must be > 0")
        if not self.weight_decay >= 0:
            raise ConfigError("weight_decay", "must be >= 0")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError("grad_clip", "must be > 0 (or none)")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError("val_fraction", "must be in [0, 1)")
        if not 0 <= self.seed < 2**32:  # numpy's global seed range
            raise ConfigError("seed", "must be in [0, 2**32)")
        if not self.device.strip() or ":" in self.device:  # accelerate places the run; no index here
            raise ConfigError("device", "must be cpu or cuda (pick the GPU with CUDA_VISIBLE_DEVICES)")
