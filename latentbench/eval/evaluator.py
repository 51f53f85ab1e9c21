"""The one evaluator: task -> method -> outcomes -> scores -> a results record (+ a samples JSONL)."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentbench import paths, provenance
from latentbench.config import config_dict
from latentbench.eval.metrics import accuracy_metrics, mean_method_metrics
from latentbench.eval.schema import validate_results
from latentbench.progress import progress
from latentbench.request import RunRequest

if TYPE_CHECKING:
    from latentbench.methods.base import Outcome
    from latentbench.tasks import Score

log = logging.getLogger(__name__)


@dataclass
class EvalRequest(RunRequest):
    output_path: str = "results"
    log_samples: bool = False
    workers: int = 2  # sandbox workers for code tasks


def evaluate(req: EvalRequest, lm: Any = None, method: Any = None) -> tuple[dict[str, Any], Path]:
    """Run ``req`` and write its results JSON; returns the record and its path.
    ``lm`` (a loaded model) and ``method`` (a Method instance) override ``req.model`` / ``req.method``."""
    import torch

    from latentbench.models import load_model
    from latentbench.tasks import get_task

    started = provenance.now()
    task = get_task(req.task)
    method = method or req.make_method()
    data_dir = paths.data_dir(req.data_dir)
    split = task.split(req.split)
    examples = task.examples(split, limit=req.limit, data_dir=data_dir)
    if req.limit:
        log.warning("--limit %d: a limited run is for checking, not a leaderboard number", req.limit)
    t0 = time.perf_counter()
    lm = lm or load_model(req.model, dtype=req.dtype, device=req.device)
    load_s = time.perf_counter() - t0

    torch.manual_seed(req.seed)
    t0 = time.perf_counter()
    outcomes = list(progress(method.run(lm, task, examples), len(examples), f"{task.name} {method.name}", req.show_progress))
    t_score = time.perf_counter()
    flat = [(o, text) for o in outcomes for text in o.outputs]
    scores = task.score_many([o.example for o, _ in flat], [text for _, text in flat], workers=req.workers)
    scoring_s = time.perf_counter() - t_score
    wall_s = time.perf_counter() - t0

    metrics = _metrics(task, outcomes, scores)
    latent = sum(o.latent_steps for o in outcomes)
    tokens = sum(o.generated_tokens for o in outcomes)
    record = {
        "schema_version": "results.v2",
        "task": {"name": task.name, "split": split, "n": len(outcomes), "answer_kind": task.card.answer_kind,
                 "data_source": str(data_dir) if data_dir else "hub"},
        "method": {"name": method.name, "config": config_dict(method.config)},
        "model": {**lm.describe(), "device": str(lm.device)},
        "seed": req.seed, "limit": req.limit, "leaderboard_eligible": req.limit is None,
        "metrics": metrics, "method_metrics": mean_method_metrics([o.metrics for o in outcomes]),
        "cost": {"generated_tokens": tokens, "generated_tokens_mean": tokens / max(len(outcomes), 1),
                 "forward_passes": _forward_passes(outcomes), "latent_steps": latent,
                 "wall_time_s": round(wall_s, 3), "model_load_s": round(load_s, 3), "scoring_s": round(scoring_s, 3)},
        "environment": provenance.environment(),
        "started_at": started, "finished_at": provenance.now(), "samples_file": None,
    }
    return _write(req, record, outcomes, scores)


def _metrics(task: Any, outcomes: list[Outcome], scores: list[Score]) -> dict[str, float | None]:
    """Accuracy or pass@k from every sample's verdicts (``scores`` is flat, outcome by outcome), plus the
    latent-budget metrics every method reports (from the Outcome fields)."""
    verdicts: list[dict[str, list[bool]]] = []
    cursor = 0
    for o in outcomes:
        mine = scores[cursor:cursor + len(o.outputs)]
        cursor += len(o.outputs)
        verdicts.append({v: [s.correct[v] for s in mine] for v in task.variants})
    metrics: dict[str, float | None] = dict(accuracy_metrics(verdicts, task.variants, task.card.answer_kind == "code"))
    latent = sum(o.latent_steps for o in outcomes)
    budgets = [o.latent_budget for o in outcomes if o.latent_budget]
    metrics["latent_steps_mean"] = latent / len(outcomes) if outcomes else 0.0
    metrics["latent_budget_usage"] = (latent / sum(budgets)) if budgets else None
    return metrics


def _forward_passes(outcomes: list[Outcome]) -> int:
    """A batched forward serves several examples: count each batch's calls once (outcomes of a batch share
    the same ``artifacts['batch']`` id when a method batches; otherwise they add up)."""
    seen: set[Any] = set()
    total = 0
    for o in outcomes:
        batch = o.artifacts.get("batch")
        if batch is None or batch not in seen:
            total += o.forward_passes
            seen.add(batch)
    return total


def _write(req: EvalRequest, record: dict[str, Any], outcomes: list, scores: list) -> tuple[dict[str, Any], Path]:
    out_dir = Path(req.output_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(req.model).name if "/" in req.model else req.model)
    stem = f"{record['task']['name']}-{record['task']['split']}-{record['method']['name']}-{model_slug}-" \
           f"{record['started_at'].replace(':', '').replace('-', '')[:15]}"
    if req.log_samples:
        samples = out_dir / f"samples-{stem}.jsonl"
        cursor = 0
        with samples.open("w") as fh:
            for o in outcomes:
                for i, text in enumerate(o.outputs):
                    s = scores[cursor]
                    cursor += 1
                    fh.write(json.dumps({"id": o.example.id, "sample": i, "prompt": o.prompt, "output": text,
                                         "extracted": s.extracted, "gold": o.example.gold, "correct": s.correct,
                                         "detail": s.detail, "generated_tokens": o.generated_tokens,
                                         "latent_steps": o.latent_steps, "metrics": o.metrics}) + "\n")
        record["samples_file"] = samples.name
    validate_results(record)
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record, path
