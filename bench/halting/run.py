"""``halting`` against its controls, one run on the same questions: stage A, stage C and the three controls.

Rows (each an ``eval`` that resumes from its samples file): stage A on the stage-A checkpoint; stage C on
the stage-C checkpoint; on that same checkpoint ``control=full`` (every budgeted latent, never stopping),
``control=noise`` (each latent replaced by a random vector of its norm) and ``control=none`` (no latents).
The table gives accuracy with its 95% bootstrap interval, latents per question, budget use, halting rate,
and latents and accuracy relative to stage A in the same run; the JSON keeps every row. Usage:

    python bench/halting/run.py --stage-a ckpt/halting-A --stage-c ckpt/halting-C [--limit 50] [--only 0,1]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any


def rows_of(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    base = {"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens}
    c = {**base, "checkpoint": args.stage_c, "latent_mode_stage": "C"}
    return [("stage A", {**base, "checkpoint": args.stage_a, "latent_mode_stage": "A"}),
            ("stage C", c),
            ("C, control=full", {**c, "control": "full"}),
            ("C, control=noise", {**c, "control": "noise"}),
            ("C, control=none", {**c, "control": "none"})]


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from latentbench.eval.evaluator import EvalRequest, evaluate
    from latentbench.models import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage-a", required=True, help="a `latentbench train halting --latent-mode-stage A` output")
    parser.add_argument("--stage-c", required=True, help="a `latentbench train halting --latent-mode-stage C` output")
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--only", default=None, help="comma-separated row numbers to run (0-based); default all")
    parser.add_argument("--out", default="bench/halting/results")
    args = parser.parse_args()

    out, lm = Path(args.out), load_model(args.model)
    wanted = None if args.only is None else {int(i) for i in args.only.split(",")}
    table = []
    for index, (label, config) in enumerate(rows_of(args)):
        if wanted is not None and index not in wanted:
            continue
        record, path = evaluate(EvalRequest(task=args.task, method="halting", limit=args.limit, model=args.model,
                                            output_path=str(out / "runs"), method_args=config), lm=lm)
        mm = record["method_metrics"]
        table.append({"row": label, "config": config, "results": str(path), "n": record["task"]["n"],
                      "accuracy": record["metrics"]["accuracy_flexible"],
                      "interval": record["intervals"].get("accuracy_flexible"),
                      "latents_per_question": mm["latents_per_question"], "latent_budget_use": mm["latent_budget_use"],
                      "halting_rate": mm["halting_rate"]})
    base = next((r for r in table if r["row"] == "stage A"), None)
    t = Table(title="halting: stage A, stage C and controls on the same questions (ratios against stage A)")
    for col in ("row", "n", "accuracy [95% CI]", "Δacc vs A (pts)", "latents/question", "× A", "budget use",
                "halting rate"):
        t.add_column(col)
    for r in table:
        if base is not None:
            r["accuracy_minus_a_points"] = 100 * (r["accuracy"] - base["accuracy"])
            r["latents_vs_a"] = r["latents_per_question"] / base["latents_per_question"]
        ci = r["interval"] or [float("nan")] * 2
        t.add_row(r["row"], str(r["n"]), f"{r['accuracy']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]",
                  f"{r.get('accuracy_minus_a_points', float('nan')):+.1f}", f"{r['latents_per_question']:.2f}",
                  f"{r.get('latents_vs_a', float('nan')):.2f}", f"{r['latent_budget_use']:.3f}", f"{r['halting_rate']:.3f}")
    Console().print(t)
    stem = out / f"halting-{args.task}-{table[0]['n'] if table else 0}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({
        "task": args.task, "limit": args.limit, "model": args.model, "stage_a": args.stage_a, "stage_c": args.stage_c,
        "machine": platform.processor() or platform.machine(), "rows": table}, indent=2) + "\n")
    print(f"wrote {stem.with_suffix('.json')}")


if __name__ == "__main__":
    main()
