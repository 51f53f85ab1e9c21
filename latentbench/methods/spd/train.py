"""``latentbench train spd-judge DATASET… --algo supervised|grpo``: the mismatch judge.

- ``supervised`` (AutoJudge's warm start): one item per *mined* mismatch of ``spd-trace`` datasets
  (``generate --method spd --mine N``); target 1 when swapping in the draft token left the answer
  unchanged (acceptable), 0 when it changed it (important); BCE on the judge's logit.
- ``grpo``: one item per question (its trace's prompt). Per question, ``group_size`` rollouts: whole
  speculative decodes of the target in which every mismatch's decision is drawn from the judge's score
  (accept with probability sigmoid(logit)). Reward = answer correct − ``rejection_cost`` · rejected
  mismatches / verifications; advantages relative to the group (``grpo_advantages``; divided by its
  std unless ``scale_rewards`` is off); loss = −mean over rollouts of advantage · mean log-probability
  of that rollout's decisions, plus ``kl_coef`` · the Bernoulli KL to the starting judge. Start it from
  the supervised judge (``init``).

The GRPO loss for a Bernoulli policy over a handful of decisions is a few lines: trl's GRPOTrainer
samples text completions from a causal LM and scores tokens, while here the policy is a small head whose
actions are accept/reject decisions inside our own decoding loop, so it is owned here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from latentbench.config import ConfigError, option
from latentbench.errors import UsageError
from latentbench.train.config import TrainConfig

if TYPE_CHECKING:
    import torch

    from latentbench.models import LoadedModel
    from latentbench.train.data import TrainData


@dataclass
class SpdJudgeConfig(TrainConfig):
    algo: Literal["supervised", "grpo"] = option("supervised", "supervised on mined labels, or grpo rollouts "
                                                              "rewarded by answer correctness.")
    width: int = option(0, "0: a logistic head (AutoJudge); > 0: an MLP of this hidden width (with init: its width).")
    init: str | None = option(None, "Start from this trained spd-judge directory (grpo: the supervised judge).")
    group_size: int = option(4, "grpo: rollouts per question (G).")
    rejection_cost: float = option(0.1, "grpo: λ in reward = correct − λ · rejected mismatches / verifications.")
    kl_coef: float = option(0.0, "grpo: weight of the KL to the starting judge.")
    scale_rewards: bool = option(True, "grpo: divide advantages by the group's std (false: Dr. GRPO, so groups "
                                       "that differ only in rejection cost do not get advantages of ±1).")
    max_new_tokens: int = option(0, "grpo: text budget per rollout (0: the dataset's).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.algo not in ("supervised", "grpo"):
            raise ConfigError("algo", "expected supervised or grpo")
        if self.width < 0 or self.max_new_tokens < 0:
            raise ConfigError("width" if self.width < 0 else "max_new_tokens", "must be >= 0")
        if self.group_size < 2:
            raise ConfigError("group_size", "must be >= 2 (advantages are relative within a group)")
        if self.rejection_cost < 0 or self.kl_coef < 0:
            raise ConfigError("rejection_cost" if self.rejection_cost < 0 else "kl_coef", "must be >= 0")


@dataclass
class Rollouts:
    """The frozen target, its draft and the task, as the traces were made (grpo only)."""

    lm: LoadedModel
    target: Any
    draft: Any
    task: Any
    examples: dict[str, Any]
    gamma: int
    max_new_tokens: int


class SpdJudgeTrainer:
    """The mismatch judge of ``spd``: supervised on mined labels, or GRPO on answer correctness."""

    name = "spd-judge"
    method = "spd"
    config_class = SpdJudgeConfig
    table = "mismatches"

    def __init__(self, config: SpdJudgeConfig) -> None:
        self.config = config
        self.table = "traces" if config.algo == "grpo" else "mismatches"
        self._features: dict[tuple[int, int], torch.Tensor] = {}
        self._generator: dict[str, Any] | None = None
        self._rollouts: Rollouts | None = None
        self._start: torch.nn.Module | None = None  # the starting judge, frozen (grpo's KL)

    def keep_row(self, row: dict[str, Any]) -> bool:
        if self.config.algo == "grpo":
            return row["trace_index"] == 0
        return row["important"] is not None and row["features_ref"] is not None

    def base_model_sha256(self) -> str | None:
        return (self._generator or {}).get("sha256")

    # -- module -----------------------------------------------------------------------------------------
    def build(self, data: TrainData) -> torch.nn.Module:
        from pathlib import Path

        from latentbench.methods.spd.judge import JudgeHead
        from latentbench.train.checkpoint import load_checkpoint, trained_output

        self._generator = data.generator()
        sample = self._sample_features(data)
        if self.config.init:  # the starting judge keeps its own width; it must read this generator's states
            start = trained_output(Path(self.config.init), self.name, "init", self._generator["id"],
                                   self._generator["sha256"])
            module = JudgeHead(sample.shape[-1], int(start["config"].get("width", 0)))
            load_checkpoint(self.config.init, module)
        else:
            module = JudgeHead(sample.shape[-1], self.config.width)
            module.standardize_on(sample)
        if self.config.algo == "grpo":
            self._rollouts = self._open_rollouts(data)
            self._start = copy.deepcopy(module).requires_grad_(False).eval()
        return module

    def _sample_features(self, data: TrainData) -> torch.Tensor:
        """Up to 64 traces' mismatch features, to size and standardize the head."""
        import torch

        ds = data.datasets[0]
        traces = ds.table("traces").filter(ds.table("traces")["features_ref"].is_not_null()).head(64)
        if not traces.height:
            raise UsageError(f"{ds.path}: no trace has a mismatch; nothing for a judge to read")
        return torch.cat([ds.array("features", int(r), torch=True).float() for r in traces["features_ref"]])

    def _open_rollouts(self, data: TrainData) -> Rollouts:
        from latentbench.methods.spd.draft import Side, make_draft
        from latentbench.models import load_model
        from latentbench.paths import data_dir
        from latentbench.tasks import get_task

        manifest = data.datasets[0].manifest
        info, method = manifest, manifest.get("method_config") or {}
        if method.get("method") != "spd":
            raise UsageError(f"{data.datasets[0].path}: grpo needs datasets written by `generate --method spd`")
        lm = load_model(self._generator["id"])
        if self._generator["sha256"] and lm.weights_sha256 != self._generator["sha256"]:
            raise UsageError(f"model {self._generator['id']}: weights differ from the ones the traces were made with")
        draft = make_draft(lm, method["draft"], load_model(method["draft_model"]) if method["draft"] == "model" else None)
        task = get_task(info["task"])
        examples = {ex.id: ex for ex in task.examples(info["split"], data_dir=data_dir())}
        budget = self.config.max_new_tokens or method.get("max_new_tokens") or task.card.max_new_tokens
        return Rollouts(lm, Side.of(lm), draft, task, examples, int(method["gamma"]), int(budget))

    # -- batches ----------------------------------------------------------------------------------------
    def collate(self, rows: list[dict[str, Any]], data: TrainData) -> dict[str, Any]:
        import torch

        if self.config.algo == "grpo":
            return {"example_ids": [r["example_id"] for r in rows], "prompts": [r["prompt"] for r in rows]}
        feats = torch.stack([self._trace_features(data, r)[r["mismatch_index"]] for r in rows])
        return {"features": feats, "acceptable": torch.tensor([0.0 if r["important"] else 1.0 for r in rows])}

    def _trace_features(self, data: TrainData, row: dict[str, Any]) -> torch.Tensor:
        from latentbench.train.data import SOURCE

        key = (row[SOURCE], int(row["features_ref"]))
        if key not in self._features:
            self._features[key] = data.array(row, "features_ref").float()
        return self._features[key]

    # -- objective --------------------------------------------------------------------------------------
    def loss(self, module: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        import torch.nn.functional as F

        if self.config.algo == "grpo":
            return self._grpo_loss(module, batch)
        logits = module(batch["features"])
        loss = F.binary_cross_entropy_with_logits(logits, batch["acceptable"])
        return loss, {"accuracy": float(((logits > 0).float() == batch["acceptable"]).float().mean())}

    def _grpo_loss(self, module: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        import torch
        import torch.nn.functional as F

        from latentbench.methods.generation import eos_token_ids
        from latentbench.methods.spd.decode import prompt_ids, speculative_decode
        from latentbench.methods.spd.judge import sampled_judge
        from latentbench.train.advantages import grpo_advantages

        ro, cfg, g = self._rollouts, self.config, self.config.group_size
        assert ro is not None, "build() opens the rollouts"
        ids = [p for p in prompt_ids(ro.lm.tokenizer, batch["prompts"]) for _ in range(g)]
        was_training = module.training
        # validation draws from a fixed seed, so a checkpoint's validation loss can be recomputed exactly
        generator = None if was_training else torch.Generator().manual_seed(cfg.seed)
        module.eval()
        traces = speculative_decode(ro.target, ro.draft, ro.lm.model.get_input_embeddings(), ids, gamma=ro.gamma,
                                    max_new_tokens=ro.max_new_tokens, eos_ids=eos_token_ids(ro.lm),
                                    decide=sampled_judge(module, generator), pad_id=ro.lm.tokenizer.pad_token_id)
        module.train(was_training)
        correct, rejected_share = [], []
        for k, trace in enumerate(traces):
            example = ro.examples[batch["example_ids"][k // g]]
            text = ro.lm.tokenizer.decode(trace.tokens, skip_special_tokens=True)
            correct.append(float(ro.task.score(example, text).correct[ro.task.primary_variant]))
            rejected = sum(not s["accepted"] for s in trace.mismatches)
            rejected_share.append(rejected / max(trace.verifications, 1))
        rewards = torch.tensor(correct) - cfg.rejection_cost * torch.tensor(rejected_share)
        advantages = grpo_advantages(rewards.view(-1, g), scale=cfg.scale_rewards).flatten()
        device = next(module.parameters()).device
        logps, kl = [], torch.zeros((), device=device)
        for trace in traces:
            if not trace.features:
                logps.append(torch.zeros(0, device=device))
                continue
            feats = torch.stack(trace.features).to(device)  # made outside inference mode: autograd can use it
            taken = torch.tensor([s["accepted"] for s in trace.mismatches], device=device)
            logits = module(feats)
            logps.append(torch.where(taken, F.logsigmoid(logits), F.logsigmoid(-logits)))
            if cfg.kl_coef > 0 and self._start is not None:
                kl = kl + bernoulli_kl(logits, self._start(feats)).mean() / len(traces)
        anchor = sum(p.sum() for p in module.parameters()) * 0.0  # a graph even when no rollout decided anything
        loss = grpo_policy_loss(logps, advantages.to(device)) + cfg.kl_coef * kl + anchor
        metrics = {"reward": float(rewards.mean()), "correct": sum(correct) / len(correct),
                   "rejected_per_verification": sum(rejected_share) / len(rejected_share),
                   "mean_accepted_length": sum(t.metrics()["mean_accepted_length"] for t in traces) / len(traces)}
        if cfg.kl_coef > 0:
            metrics["kl"] = float(kl.detach())
        return loss, metrics


def bernoulli_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(sigmoid(logits)) || Bernoulli(sigmoid(ref_logits))), elementwise."""
    import torch.nn.functional as F

    p = logits.sigmoid()
    return (p * (F.logsigmoid(logits) - F.logsigmoid(ref_logits))
            + (1 - p) * (F.logsigmoid(-logits) - F.logsigmoid(-ref_logits)))


def grpo_policy_loss(logps: list[torch.Tensor], advantages: torch.Tensor) -> torch.Tensor:
    """−mean over rollouts of advantage · mean log-probability of the rollout's decisions (rollouts
    without decisions count in the mean with 0)."""
    import torch

    terms = [-(a * lp.mean()) for a, lp in zip(advantages, logps, strict=True) if len(lp)]
    return torch.stack(terms).sum() / len(logps) if terms else advantages.new_zeros(())
