"""The one evaluator: task -> method -> outcomes -> scores -> a results record (+ a samples JSONL).

Each question is scored as soon as the method yields it and appended to the samples file, so a run
that stops part-way resumes from there (same settings -> same file names); the record is computed
from the samples file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentbench import paths, provenance
from latentbench.config import config_dict
from latentbench.eval.metrics import (
    accuracy_metrics,
    bootstrap_intervals,
    mean_method_metrics,
    standard_errors,
)
from latentbench.eval.samples import append_rows, read_questions, rewrite, sample_rows, share_batch_time
from latentbench.eval.schema import validate_results
from latentbench.methods.base import make_method, resolved_config
from latentbench.progress import progress_bar
from latentbench.request import RunRequest

log = logging.getLogger(__name__)


@dataclass
class EvalRequest(RunRequest):
    output_path: str = "results"
    log_samples: bool = True  # False: no samples file kept (and no resume)
    workers: int = 2  # sandbox workers for code tasks
    unsafe_no_sandbox: bool = False  # code tasks: without bubblewrap, run code with rlimits only


def run_stem(req: EvalRequest, task: str, split: str, method: Any) -> str:
    """File stem naming the run by what determines its outputs, so a re-run finds its own files."""
    key = json.dumps({"task": task, "split": split, "limit": req.limit, "seed": req.seed, "model": req.model,
                      "dtype": req.dtype, "method": method.name, "config": config_dict(method.config)},
                     sort_keys=True)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(req.model).name if "/" in req.model else req.model)
    return f"{task}-{split}-{method.name}-{slug}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def evaluate(req: EvalRequest, lm: Any = None, method: Any = None) -> tuple[dict[str, Any], Path]:
    """Run (or resume, or find finished) ``req``; returns the results record and its path.
    ``lm`` (a loaded model) and ``method`` (a Method instance) override ``req.model`` / ``req.method``."""
    import torch

    from latentbench.models import load_model
    from latentbench.tasks import get_task
    from latentbench.tasks.sandbox import unsafe_fallback

    started = provenance.now()
    task = get_task(req.task)
    _sandbox(task, req.unsafe_no_sandbox)  # no bubblewrap and no opt-in: refuse before any model runs
    method = method or make_method(req.method, req.method_args, req.method_sources, seed=req.seed)
    data_dir = paths.data_dir(req.data_dir)
    split = task.split(req.split)
    examples = task.examples(split, limit=req.limit, data_dir=data_dir, allow_modified_data=req.allow_modified_data)
    examples, excluded = _leave_out_trained(method, task, examples)
    out_dir = Path(req.output_path)
    paths.check_writable_dir(out_dir, "--output-path")  # before the model loads: a bad path ends the run now
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = run_stem(req, task.name, split, method)
    results_path, samples_path = out_dir / f"{stem}.json", out_dir / f"samples-{stem}.jsonl"
    if results_path.exists() and req.log_samples:
        log.warning("%s is already complete; delete it to run again", results_path)
        return json.loads(results_path.read_text()), results_path
    if req.limit:
        log.warning("--limit %d: a limited run is for checking, not a leaderboard number", req.limit)
    if not req.log_samples:
        samples_path.unlink(missing_ok=True)
    done = read_questions(samples_path)
    todo = [ex for ex in examples if ex.id not in done]
    if done:
        log.warning("resuming %s: %d of %d questions already scored", samples_path, len(examples) - len(todo),
                    len(examples))

    t0 = time.perf_counter()
    lm = lm or load_model(req.model, dtype=req.dtype, device=req.device)
    load_s = time.perf_counter() - t0
    torch.manual_seed(req.seed)
    session, scoring_s, last = uuid.uuid4().hex[:8], 0.0, time.perf_counter()
    with progress_bar(f"{task.name} {method.name}", len(todo), req.show_progress) as bar:
        for outcome in method.run(lm, task, todo):
            t_score = time.perf_counter()
            with unsafe_fallback(req.unsafe_no_sandbox):
                scores = task.score_many([outcome.example] * len(outcome.outputs), outcome.outputs,
                                         workers=req.workers)
            scoring_s += time.perf_counter() - t_score
            now = time.perf_counter()
            rows = sample_rows(outcome, scores, session, now - last)
            last = now
            done[outcome.example.id] = rows
            append_rows(samples_path, rows)
            bar.advance(tokens=outcome.generated_tokens, correct=scores[0].correct[task.primary_variant])

    questions = [done[ex.id] for ex in examples]
    share_batch_time(questions)
    record = _record(req, task, split, method, lm, questions, data_dir, excluded)
    record["cost"].update(model_load_s=round(load_s, 3), scoring_s=round(scoring_s, 3))
    record.update(started_at=started, finished_at=provenance.now())
    if req.log_samples:
        rewrite(samples_path, questions)  # in question order, whatever the sessions
        record["samples_file"] = samples_path.name
    else:
        samples_path.unlink(missing_ok=True)
    validate_results(record)
    results_path.write_text(json.dumps(record, indent=2) + "\n")
    return record, results_path


def _leave_out_trained(method: Any, task: Any, examples: list) -> tuple[list, dict[str, Any] | None]:
    """Examples minus those the method's checkpoint trained on (``Method.trained_on``), and what was left
    out; a method never scores questions it learned from."""
    hook = getattr(method, "trained_on", None)
    seen, reason = hook(task, examples) if hook else (set(), "")
    if not seen:
        return examples, None
    kept = [ex for ex in examples if ex.id not in seen]
    log.warning("leaving out %d of the %d questions: %s", len(examples) - len(kept), len(examples), reason)
    return kept, {"n": len(examples) - len(kept), "reason": reason}


def _record(req: EvalRequest, task: Any, split: str, method: Any, lm: Any, questions: list[list[dict]],
            data_dir: Path | None, excluded: dict[str, Any] | None = None) -> dict[str, Any]:
    """The results record from the samples rows (``questions[i]``: the rows of question i)."""
    verdicts = [{v: [r["correct"][v] for r in rows] for v in task.variants} for rows in questions]
    firsts = [rows[0] for rows in questions]
    code = task.card.answer_kind == "code"
    metrics: dict[str, float | None] = dict(accuracy_metrics(verdicts, task.variants, code))
    resolved = resolved_config(method, task)
    latent = sum(r["latent_steps"] for r in firsts)
    budgets = [r["latent_budget"] for r in firsts if r["latent_budget"]]
    metrics["latent_steps_mean"] = latent / len(firsts) if firsts else 0.0
    metrics["latent_budget_usage"] = (latent / sum(budgets)) if budgets else None
    tokens = sum(r["generated_tokens"] for r in firsts)
    data_files = task.data_files(split, data_dir)
    return {
        "schema_version": "results.v2",
        "task": {"name": task.name, "split": split, "n": len(questions), "answer_kind": task.card.answer_kind,
                 "data_source": str(data_dir) if data_dir else "hub", "data_sha256": _data_sha256(task, split, data_dir),
                 "data_files": data_files, **({"excluded": excluded} if excluded else {})},
        "command": req.command, "sandbox": _sandbox(task, req.unsafe_no_sandbox),
        "method": {"name": method.name, "config": config_dict(method.config), "resolved": resolved},
        "model": {**lm.describe(), "device": str(lm.device)}, "chat": _chat(lm, resolved),
        "seed": req.seed, "limit": req.limit, "leaderboard_eligible": (req.limit is None and not excluded
                                                            and not any(f["modified"] for f in data_files)),
        "metrics": metrics, "intervals": bootstrap_intervals(verdicts, task.variants, code, seed=req.seed),
        "stderr": standard_errors(verdicts, task.variants, code),
        "method_metrics": mean_method_metrics([r["metrics"] for r in firsts]),
        "cost": {"generated_tokens": tokens, "generated_tokens_mean": tokens / max(len(firsts), 1),
                 "truncated_outputs": _truncated(questions),
                 "forward_passes": _forward_passes(firsts), "latent_steps": latent,
                 "wall_time_s": round(sum(r["time_s"] for r in firsts), 3)},
        "environment": provenance.environment(), "samples_file": None,
    }


def _chat(lm: Any, resolved: dict[str, Any]) -> dict[str, str | None]:
    """How prompts were wrapped: the system message the method passed (null: the method sets none, so the
    template's default applies), its rendering by the chat template, and the template's sha256."""
    from latentbench.methods.generation import chat_template_sha256, rendered_system_prompt

    system = resolved.get("system_prompt") or None
    uses_chat = "system_prompt" in resolved  # a method without the field may not use the chat template at all
    return {"system_prompt": system, "rendered_system_prompt": rendered_system_prompt(lm, system) if uses_chat else None,
            "template_sha256": chat_template_sha256(lm)}


def _truncated(questions: list[list[dict]]) -> int | None:
    """Outputs that ran out of text budget before EOS, all samples (None: the method does not say)."""
    flags = [row.get("truncated") for rows in questions for row in rows]
    return None if not flags or any(f is None for f in flags) else sum(flags)


def _data_sha256(task: Any, split: str, data_dir: Path | None) -> str | None:
    """sha256 of the local file the split was read from (None: read from the Hub or a package)."""
    path = data_dir / task.card.splits[split].file if data_dir else None
    return provenance.sha256_file(path) if path is not None and path.is_file() else None


def _sandbox(task: Any, unsafe: bool) -> str | None:
    """The sandbox backend that runs model-written code ("bwrap", or "rlimits" when ``unsafe`` and
    bubblewrap does not work; SandboxUnavailableError when neither may run); None for text tasks."""
    if task.card.answer_kind != "code":
        return None
    from latentbench.tasks.sandbox import resolve_backend

    return resolve_backend(unsafe=unsafe)


def _forward_passes(firsts: list[dict[str, Any]]) -> int:
    """A batched forward serves several questions: count each batch's calls once (rows of one batch share
    its ``batch`` id, qualified by the session that ran it; rows without one add up)."""
    seen: set[Any] = set()
    total = 0
    for row in firsts:
        if row["batch"] is None or row["batch"] not in seen:
            total += row["forward_passes"]
            seen.add(row["batch"])
    return total
