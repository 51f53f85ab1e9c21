"""``halting``: each step of a chain of thought replaced by a segment of latents with a budget (stage A),
ended early by a learned stop head (stage C); then a one-sentence answer.

``eval`` scores the answers and reports latents per question, budget use and halting rate; ``generate``
writes ``halting-segment`` datasets (per segment its source, budget, used length, stop probabilities and
latents; per question its prompt, answer target and outcome): with ``plan=gold`` on training questions,
the training data of ``latentbench train halting``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from latentbench.errors import UsageError
from latentbench.methods.base import Outcome
from latentbench.methods.generation import chat_text, eos_token_ids
from latentbench.methods.halting.config import HaltingConfig

if TYPE_CHECKING:
    from latentbench.methods.halting.budgets import Source
    from latentbench.methods.halting.model import HaltingModel
    from latentbench.models import LoadedModel
    from latentbench.store import Dataset, ExampleWriter
    from latentbench.tasks import Example, Task

log = logging.getLogger(__name__)


class HaltingMethod:
    """Budgeted latent segments on a frozen LM, with a trained latent adapter and stop head."""

    name = "halting"
    config_class = HaltingConfig
    dataset_kinds: dict[str, tuple[str, ...]] = {"halting-segment": ()}

    def __init__(self, config: HaltingConfig) -> None:
        self.config = config

    def model(self, lm: LoadedModel) -> HaltingModel:
        from pathlib import Path

        from latentbench.methods.halting.model import HaltingModel
        from latentbench.train.checkpoint import load_checkpoint, trained_output

        module = HaltingModel(lm, self.config)
        if self.config.checkpoint:
            record = trained_output(Path(self.config.checkpoint), "halting", "checkpoint", lm.model_id,
                                    lm.weights_sha256)
            load_checkpoint(self.config.checkpoint, module)
            for name in ("latent_token_id", "latent_budget_alpha", "latent_budget_gamma", "latent_budget_min",
                         "latent_budget_max", "realign_lambda"):
                trained = record["config"].get(name, getattr(self.config, name))
                if trained != getattr(self.config, name):
                    log.warning("checkpoint %s was trained with %s=%s; this run uses %s", self.config.checkpoint,
                                name, trained, getattr(self.config, name))
        return module.to(lm.device).eval()

    def user_text(self, task: Task, ex: Example) -> str:
        question = ex.question if ex.choices is None else task.prompt(ex)
        return f"{question}\n\n{self.config.instruction}"

    def sources(self, lm: LoadedModel, ex: Example) -> list[Source]:
        from latentbench.methods.halting.budgets import Source, chain_steps

        cfg = self.config
        if cfg.control == "none":
            return []
        if cfg.plan == "fixed":
            return [Source("step", cfg.segment_size)] * cfg.segments
        if not ex.meta.get("solution"):
            raise UsageError(f"plan=gold: {ex.id} has no reference solution to take steps from (use plan=fixed)")
        steps = chain_steps(str(ex.meta["solution"]))  # none (a bare "#### 9"): no segment to replace
        return [Source("step", len(lm.tokenizer(s, add_special_tokens=False)["input_ids"]), s) for s in steps]

    def run(self, lm: LoadedModel, task: Task, examples: list[Example]) -> Iterator[Outcome]:
        import torch

        from latentbench.methods.halting.collate import Item, collate

        cfg = self.config
        if task.card.answer_kind == "code":
            raise UsageError(f"--method halting: {task.name} needs written code; halting answers in one sentence")
        module = self.model(lm)
        noise = torch.Generator().manual_seed(cfg.seed) if cfg.control == "noise" else None
        eos = eos_token_ids(lm)
        for start in range(0, len(examples), cfg.batch_size):
            batch = examples[start:start + cfg.batch_size]
            prompts = [chat_text(lm, self.user_text(task, ex)) for ex in batch]
            sources = [self.sources(lm, ex) for ex in batch]
            items = [Item(lm.tokenizer(p, add_special_tokens=False)["input_ids"], s)
                     for p, s in zip(prompts, sources, strict=True)]
            collated = collate(items, cfg, module.latent_token_id, lm.tokenizer.pad_token_id)
            collated = {k: v.to(lm.device) if isinstance(v, torch.Tensor) else v for k, v in collated.items()}
            with torch.inference_mode():
                run = module.run_latents(collated, stage=cfg.stage, noise=noise)
                tokens, forwards = module.answer(lm, run, cfg.max_new_tokens, eos)
            for row, (ex, prompt, row_sources) in enumerate(zip(batch, prompts, sources, strict=True)):
                yield self._outcome(lm, task, ex, prompt, row_sources, collated, run, row, tokens[row],
                                    run.forwards + forwards)

    def _outcome(self, lm: LoadedModel, task: Task, ex: Example, prompt: str, sources: list[Source],
                 collated: dict[str, Any], run: Any, row: int, tokens: list[int], forwards: int) -> Outcome:
        from latentbench.methods.halting.collate import segment_budgets

        text = lm.tokenizer.decode(tokens, skip_special_tokens=True)
        score = task.score(ex, text)
        budgets = segment_budgets(collated)[row]
        used = run.used[row]
        stopped = [u < b for u, b in zip(used, budgets, strict=True)]
        segments = [{"source": s, "budget": b, "used": u, "stopped_early": st if self.config.stage == "C" else None,
                     "stop_probs": [float(p) for p in run.stop_probs[row][i]] if self.config.stage == "C" else None,
                     "latents": run.latents[row][i]}
                    for i, (s, b, u, st) in enumerate(zip(sources, budgets, used, stopped, strict=True))]
        total_budget, total_used = sum(budgets), sum(used)
        return Outcome(
            ex, prompt, [text], len(tokens), forwards, latent_steps=total_used, latent_budget=total_budget,
            truncated=[len(tokens) >= self.config.max_new_tokens],
            metrics={"latents_per_question": float(total_used),
                     "latent_budget_use": total_used / total_budget if total_budget else 0.0,
                     "halting_rate": sum(stopped) / len(stopped) if stopped else 0.0},
            artifacts={"segments": segments, "text": text, "prediction": score.extracted[task.primary_variant],
                       "correct": score.correct[task.primary_variant]})

    def write(self, ex: ExampleWriter, outcome: Outcome, kind: str) -> None:
        import torch

        cfg, art = self.config, outcome.artifacts
        rows = []
        for index, seg in enumerate(art["segments"]):
            source = seg["source"]
            ref = ex.add_array("segment_latents", torch.stack(seg["latents"]).float().cpu()) if seg["latents"] else None
            rows.append({"segment_index": index, "source_kind": source.kind, "source_size": source.size,
                         "budget": seg["budget"], "used_length": seg["used"], "stop_probs": seg["stop_probs"],
                         "stage": cfg.stage, "stopped_early": seg["stopped_early"], "text": source.text,
                         "answer_correct": art["correct"], "latent_ref": ref})
        ex.add_rows("segments", rows)
        ex.add_rows("questions", [{
            "prompt": outcome.prompt, "answer_target": f"The answer is {outcome.example.gold}.",
            "gold": outcome.example.gold, "output": art["text"], "prediction": art["prediction"],
            "answer_correct": art["correct"], "plan": cfg.plan, "control": cfg.control, "stage": cfg.stage,
            "n_segments": len(rows), "latents_used": outcome.latent_steps,
            "latent_budget_total": outcome.latent_budget or 0}])

    @staticmethod
    def summarize(dataset: Dataset) -> str:
        questions, segments = dataset.table("questions"), dataset.table("segments")
        correct = questions["answer_correct"].drop_nulls()
        budget = int(segments["budget"].sum() or 0) if segments.height else 0
        used = int(segments["used_length"].sum() or 0) if segments.height else 0
        return (f"questions={questions.height} segments={segments.height} "
                f"latents_per_question={used / max(questions.height, 1):.2f} budget_use={used / budget if budget else 0:.3f} "
                f"accuracy={correct.mean() if len(correct) else float('nan'):.3f}")
