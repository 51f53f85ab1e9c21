"""The mismatch judge: a score head on the features of one draft/target mismatch.

Features (``decode.speculative_decode``): the target's last hidden state that predicted the position, the
draft's, and the input embeddings of the draft token and of the target token. The head standardizes
them (per-feature mean and std of the training rows, kept as buffers) and applies a logistic layer, as
AutoJudge does, or with ``width > 0`` a 2-layer MLP. Its sigmoid is the probability that accepting the
draft token leaves the answer unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from latentbench.errors import UsageError

if TYPE_CHECKING:
    from latentbench.methods.spd.decode import Decide
    from latentbench.models import LoadedModel


class JudgeHead(nn.Module):
    def __init__(self, features: int, width: int = 0) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))
        self.net = nn.Linear(features, 1) if width == 0 else nn.Sequential(
            nn.Linear(features, width), nn.GELU(), nn.Linear(width, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[n, F] -> logits [n]."""
        return self.net((features.to(self.shift) - self.shift) / self.scale).squeeze(-1)

    def standardize_on(self, features: torch.Tensor) -> None:
        self.shift.copy_(features.mean(0))
        self.scale.copy_(features.std(0).nan_to_num(1.0).clamp_min(1e-4))


def feature_size(target: LoadedModel, draft_hidden: int | None = None) -> int:
    hidden = target.model.config.hidden_size
    return 3 * hidden + (draft_hidden or hidden)


def threshold_judge(module: nn.Module, threshold: float) -> Decide:
    """judge=learned: accept where the score clears ``threshold`` (0 accepts every mismatch)."""
    def decide(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        score = torch.sigmoid(module(features)).cpu()
        return score, score >= threshold
    return decide


def sampled_judge(module: nn.Module, generator: torch.Generator | None) -> Decide:
    """The judge as a policy (GRPO rollouts): accept with probability equal to the score."""
    def decide(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        score = torch.sigmoid(module(features)).cpu()
        return score, torch.rand(score.shape, generator=generator) < score
    return decide


def load_judge(directory: str | Path, target: LoadedModel, features: int) -> nn.Module:
    """A trained judge for ``target``'s mismatches; refused if trained on another target's traces."""
    from latentbench.train.checkpoint import load_checkpoint, trained_output

    directory = Path(directory)
    record = trained_output(directory, "spd-judge", "judge_path", target.model_id, target.weights_sha256)
    module = JudgeHead(features, int(record["config"].get("width", 0)))
    try:
        load_checkpoint(directory, module)
    except RuntimeError as err:  # shape mismatch: another feature size
        raise UsageError(f"judge_path={directory}: does not fit {features} features ({str(err).splitlines()[0]})") from None
    return module.to(target.device).eval()
