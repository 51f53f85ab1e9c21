"""``latentbench train halting DATASET…``: the latent adapter and the stop head of ``halting``, on a frozen LM.

Items are the ``questions`` rows of ``halting-segment`` datasets written with ``plan=gold`` on training
questions (GSM8K ``train``, GSM8k-Aug ``aug-valid``): each segment replaces one written step. Losses:

- CE on the answer sentence after the latents;
- alignment (``latent_align_weight``): 1 − cosine between the last hidden state of a segment's last
  used latent and the frozen model's hidden state at the last token of the written step it replaces
  (the model reading the chain as text is the teacher, as CODI aligns at the answer; here per step);
- stage C only: the stop BCE against ``target = max(1, round(ρ · budget))`` (stop = 1 exactly there,
  0 before; the segment is run to its target, teacher forced) and the cost
  ``latent_cost_weight · Σ expected used latents`` (Σₖ Πⱼ₍ⱼ₍ₖ₎ (1 − p_stop,j), differentiable).

Schedule: ``latent_mode_stage=C`` with ``stage_a_steps=N`` trains stage A for the first N steps, then C
(``--init`` continues from another run, e.g. a stage-A one).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from latentbench.config import ConfigError, option
from latentbench.errors import UsageError
from latentbench.methods.halting.config import SegmentConfig
from latentbench.train.config import TrainConfig

if TYPE_CHECKING:
    import torch

    from latentbench.train.data import TrainData


@dataclass
class HaltingTrainConfig(TrainConfig, SegmentConfig):
    stage_a_steps: int = option(0, "latent_mode_stage=C: train stage A (full budgets, no stop or cost terms) for "
                                   "the first N steps, then stage C.")
    init: str | None = option(None, "Start from this trained halting directory (e.g. a stage-A run).")

    def __post_init__(self) -> None:
        TrainConfig.__post_init__(self)
        SegmentConfig.__post_init__(self)
        if self.stage_a_steps < 0:
            raise ConfigError("stage_a_steps", "must be >= 0")


class HaltingTrainer:
    """Trains ``HaltingModel``'s adapter (every stage) and stop head (stage C); the LM stays frozen."""

    name = "halting"
    method = "halting"
    config_class = HaltingTrainConfig
    table = "questions"

    def __init__(self, config: HaltingTrainConfig) -> None:
        self.config = config
        self._step: int | None = None  # None (outside a training loop): the final stage
        self._lm: Any = None
        self._generator: dict[str, Any] | None = None
        self._segments: dict[tuple[int, str], list[dict[str, Any]]] = {}
        self._segments_read: set[int] = set()

    def set_step(self, step: int) -> None:
        self._step = step

    @property
    def stage(self) -> str:
        cfg = self.config
        in_stage_a = self._step is not None and self._step <= cfg.stage_a_steps
        return "C" if cfg.latent_mode_stage == "C" and not in_stage_a else "A"

    def keep_row(self, row: dict[str, Any]) -> bool:
        return row["plan"] == "gold" and bool(row["answer_target"])

    def base_model_sha256(self) -> str | None:
        return (self._generator or {}).get("sha256")

    def build(self, data: TrainData) -> torch.nn.Module:
        from pathlib import Path

        from latentbench.methods.halting.model import HaltingModel
        from latentbench.models import load_model
        from latentbench.train.checkpoint import load_checkpoint, trained_output

        self._generator = data.generator()
        self._lm = load_model(self._generator["id"])
        if self._generator["sha256"] and self._lm.weights_sha256 != self._generator["sha256"]:
            raise UsageError(f"model {self._generator['id']}: weights differ from the ones the datasets were made with")
        module = HaltingModel(self._lm, self.config)
        if self.config.init:
            record = trained_output(Path(self.config.init), self.name, "init", self._generator["id"],
                                    self._generator["sha256"])
            features = record["config"].get("stop_features", "hidden")
            if features == self.config.stop_features:
                load_checkpoint(self.config.init, module)
            else:  # the adapter carries over; a stop head reading other features starts afresh
                start = HaltingModel(self._lm, dataclasses.replace(self.config, stop_features=features))
                load_checkpoint(self.config.init, start)
                module.adapter.load_state_dict(start.adapter.state_dict())
        return module

    # -- batches ----------------------------------------------------------------------------------------
    def _segment_rows(self, data: TrainData, row: dict[str, Any]) -> list[dict[str, Any]]:
        from latentbench.train.data import SOURCE

        if row[SOURCE] not in self._segments_read:  # each dataset's table once (questions without steps have no rows)
            self._segments_read.add(row[SOURCE])
            table = data.dataset(row).table("segments")
            for seg in table.sort(["example_id", "segment_index"]).to_dicts():
                self._segments.setdefault((row[SOURCE], seg["example_id"]), []).append(seg)
        return self._segments.get((row[SOURCE], row["example_id"]), [])

    def collate(self, rows: list[dict[str, Any]], data: TrainData) -> dict[str, Any]:
        from latentbench.methods.halting.budgets import Source
        from latentbench.methods.halting.collate import Item, collate
        from latentbench.methods.halting.model import latent_token_id

        tok = self._lm.tokenizer
        items = []
        for row in rows:
            segs = self._segment_rows(data, row)
            sources = [Source(s["source_kind"], int(s["source_size"]), s["text"]) for s in segs]
            steps = [tok(s.text + "\n", add_special_tokens=False)["input_ids"] for s in sources if s.kind == "step"]
            answer = tok(row["answer_target"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            items.append(Item(tok(row["prompt"], add_special_tokens=False)["input_ids"], sources, answer, steps))
        return collate(items, self.config, latent_token_id(self._lm, self.config), tok.pad_token_id)

    # -- objective --------------------------------------------------------------------------------------
    def loss(self, module: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        import torch
        import torch.nn.functional as F

        from latentbench.methods.halting.budgets import stop_target
        from latentbench.methods.halting.collate import segment_budgets

        cfg, stage = self.config, self.stage
        budgets = segment_budgets(batch)
        force = [[stop_target(b, cfg.stop_target_ratio) for b in row] for row in budgets] if stage == "C" else None
        run = module.run_latents(batch, stage=stage, force_used=force)
        start = int(batch["prompt_length"]) + int(batch["latent_width"])
        logits = module.answer_logits(run, batch["input_ids"][:, start:], batch["attention_mask"][:, start:])
        ce = F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"][:, start:].flatten(), ignore_index=-100)
        loss, metrics = ce, {"ce": float(ce.detach()), "stage_c": float(stage == "C")}
        if cfg.latent_align_weight > 0 and "teacher_ids" in batch:
            align = self._align(module, batch, run)
            loss = loss + cfg.latent_align_weight * align
            metrics["align"] = float(align.detach())
        if stage == "C":
            probs = [torch.stack(p) for row in run.stop_probs for p in row if p]
            labels = [torch.arange(len(p), device=p.device).eq(len(p) - 1).float() for p in probs]
            bce = F.binary_cross_entropy(torch.cat(probs).clamp(1e-6, 1 - 1e-6), torch.cat(labels))
            survive = [torch.cat([p.new_ones(1), torch.cumprod(1 - p, 0)[:-1]]).sum() for p in probs]
            expected = torch.stack(survive).sum() / len(budgets)
            loss = loss + cfg.latent_stop_loss_weight * bce + cfg.latent_cost_weight * expected
            metrics.update(stop_bce=float(bce.detach()), expected_latents=float(expected.detach()))
        return loss, metrics

    def _align(self, module: Any, batch: dict[str, Any], run: Any) -> torch.Tensor:
        import torch
        import torch.nn.functional as F
        from transformers import DynamicCache

        from latentbench.models.latent import run_body

        with torch.no_grad():
            teacher = run_body(module.body, batch["teacher_mask"], cache=DynamicCache(config=module.lm.config),
                               input_ids=batch["teacher_ids"]).last_hidden_state
        pairs = [(run.segment_hidden[row][seg], teacher[row, end])
                 for row, ends in enumerate(batch["step_ends"]) for seg, end in enumerate(ends)
                 if end >= 0 and run.segment_hidden[row][seg] is not None]
        if not pairs:
            return teacher.new_zeros(())
        student, target = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        return (1 - F.cosine_similarity(student.float(), target.float(), dim=-1)).mean()
