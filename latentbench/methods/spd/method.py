"""``spd``: speculative decoding whose mismatches a judge may accept (Judge Decoding, AutoJudge).

``eval`` scores the answers and reports the decoding metrics (``Trace.metrics``, plus tokens/s);
``generate`` writes ``spd-trace`` datasets: per verified position the tokens and decision, per mismatch
the judge's input features, per trace the counts and outcome; with ``--mine N`` also AutoJudge's labels
for up to N rejected mismatches per question (``mining.mine``), the supervised judge's training data.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from latentbench.config import config_dict
from latentbench.errors import UsageError
from latentbench.methods.base import Outcome
from latentbench.methods.generation import chat_text, eos_token_ids
from latentbench.methods.spd.config import SpdConfig

if TYPE_CHECKING:

    from latentbench.methods.spd.decode import Decide
    from latentbench.methods.spd.draft import Side
    from latentbench.models import LoadedModel
    from latentbench.store import Dataset, ExampleWriter
    from latentbench.tasks import Example, Task


class SpdMethod:
    """Speculative decoding: an early-exit (or separate) draft, verified by the target; a judge may accept mismatches."""

    name = "spd"
    config_class = SpdConfig
    dataset_kinds: dict[str, tuple[str, ...]] = {"spd-trace": ()}

    def __init__(self, config: SpdConfig) -> None:
        self.config = config

    def resolved(self, task: Task) -> dict[str, Any]:
        return {**config_dict(self.config), "max_new_tokens": self.config.max_new_tokens or task.card.max_new_tokens}

    def draft_side(self, lm: LoadedModel) -> Side:
        from latentbench.methods.spd.draft import make_draft
        from latentbench.models import load_model

        cfg = self.config
        draft_lm = None
        if cfg.draft == "model":
            draft_lm = load_model(cfg.draft_model, dtype=str(lm.model.dtype).removeprefix("torch."),
                                  device=str(lm.device))
        return make_draft(lm, cfg.draft, draft_lm)

    def decide(self, lm: LoadedModel, draft: Side) -> Decide:
        from latentbench.methods.spd.decode import accept_all, reject_all
        from latentbench.methods.spd.judge import feature_size, load_judge, threshold_judge

        cfg = self.config
        if cfg.judge == "none":
            return reject_all
        if cfg.judge == "always":
            return accept_all
        module = load_judge(cfg.judge_path, lm, feature_size(lm, draft.body.config.hidden_size))
        return threshold_judge(module, cfg.threshold)

    def run(self, lm: LoadedModel, task: Task, examples: list[Example]) -> Iterator[Outcome]:
        import torch

        from latentbench.methods.spd.decode import Sampling, prompt_ids, speculative_decode
        from latentbench.methods.spd.draft import Side
        from latentbench.methods.spd.mining import mine

        cfg = self.config
        if cfg.mine and task.card.answer_kind == "code":
            raise UsageError(f"--mine: {task.name} is scored by running code, which generate does not do; "
                             "mine labels on a text task")
        max_new = self.resolved(task)["max_new_tokens"]
        target, draft = Side.of(lm), self.draft_side(lm)
        decide = self.decide(lm, draft)
        generator = torch.Generator().manual_seed(cfg.seed)
        sampling = Sampling(cfg.temperature, cfg.top_p, generator)
        eos = eos_token_ids(lm)
        for start in range(0, len(examples), cfg.batch_size):
            batch = examples[start:start + cfg.batch_size]
            prompts = [chat_text(lm, task.prompt(ex), cfg.system_prompt or None) for ex in batch]
            ids = prompt_ids(lm.tokenizer, prompts)
            began = time.perf_counter()
            traces = speculative_decode(target, draft, lm.model.get_input_embeddings(), ids, gamma=cfg.gamma,
                                        max_new_tokens=max_new, eos_ids=eos, decide=decide, sampling=sampling,
                                        pad_id=lm.tokenizer.pad_token_id)
            tokens_per_s = sum(len(t.tokens) for t in traces) / max(time.perf_counter() - began, 1e-9)
            for ex, prompt, row_ids, trace in zip(batch, prompts, ids, traces, strict=True):
                text = lm.tokenizer.decode(trace.tokens, skip_special_tokens=True)
                score = None if task.card.answer_kind == "code" else task.score(ex, text)
                mined = mine(lm, task, ex, row_ids, trace, score, limit=cfg.mine, max_new_tokens=max_new,
                             generator=generator, batch_size=cfg.batch_size) if cfg.mine and score else {}
                yield Outcome(
                    ex, prompt, [text], len(trace.tokens), 2 + trace.verifications + trace.draft_forwards,
                    metrics={**trace.metrics(), "tokens_per_s": tokens_per_s}, truncated=[trace.truncated],
                    artifacts={"trace": trace, "mined": mined, "prompt": prompt, "text": text,
                               "prediction": None if score is None else score.extracted[task.primary_variant],
                               "correct": None if score is None else score.correct[task.primary_variant]})

    def write(self, ex: ExampleWriter, outcome: Outcome, kind: str) -> None:
        write_trace(ex, outcome)

    @staticmethod
    def summarize(dataset: Dataset) -> str:
        traces = dataset.table("traces")
        mism = dataset.table("mismatches")
        mined = mism.filter(mism["important"].is_not_null()) if mism.height else mism
        correct = traces["answer_correct"].drop_nulls()
        return (f"traces={traces.height} mean_accepted_length={traces['mean_accepted_length'].mean():.3f} "
                f"acceptance_rate={traces['acceptance_rate'].mean():.3f} mismatches={mism.height} "
                f"mined={mined.height} important={int(mined['important'].sum() or 0) if mined.height else 0} "
                f"accuracy={correct.mean() if len(correct) else float('nan'):.3f}")


def write_trace(ex: ExampleWriter, outcome: Outcome, trace_index: int = 0) -> None:
    """One trace: its ``steps`` rows, ``mismatches`` rows (features in one array), and ``traces`` row."""
    import torch

    art = outcome.artifacts
    trace = art["trace"]
    ex.add_rows("steps", [{"trace_index": trace_index, **s} for s in trace.steps])
    ref = ex.add_array("features", torch.stack(trace.features).half()) if trace.features else None
    mismatches = trace.mismatches
    ex.add_rows("mismatches", [
        {"trace_index": trace_index, "mismatch_index": i, "step": s["step"], "position": s["position"],
         "draft_token": s["draft_token"], "target_token": s["target_token"], "judge_score": s["judge_score"],
         "accepted": s["accepted"], "important": art["mined"].get(i, (None, None))[0],
         "mined_prediction": art["mined"].get(i, (None, None))[1], "features_ref": ref}
        for i, s in enumerate(mismatches)])
    judged = [s for s in mismatches if s["accepted"]]
    metrics = trace.metrics()
    ex.add_rows("traces", [{
        "trace_index": trace_index, "n_steps": len(trace.steps), "n_verifications": trace.verifications,
        "n_proposed": trace.proposed, "n_matches": len(trace.steps) - len(mismatches),
        "n_judge_accepted": len(judged), "n_rejected": len(mismatches) - len(judged),
        "acceptance_rate": metrics["acceptance_rate"], "mean_accepted_length": metrics["mean_accepted_length"],
        "n_emitted": len(trace.tokens), "prompt": art["prompt"], "text": art["text"],
        "prediction": art["prediction"], "gold": outcome.example.gold, "answer_correct": art["correct"],
        "features_ref": ref}])
