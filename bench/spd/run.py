"""Speculative decoding with a learned judge against standard SD and target-only decoding, one run.

On the same questions, in this order (each an ``eval`` that resumes from its samples file, so an
interrupted run continues where it stopped): target-only greedy decoding (``cot``, the same text
budget), standard SD (``spd --judge none``), ``spd --judge always`` (the upper bound on accepted
length) and the learned judge at each threshold. The table gives accuracy with its 95% bootstrap
interval, mean accepted length, target forwards per generated token and tokens/s, each with its ratio
to standard SD measured in the same run; the JSON keeps every row, and the plot is the threshold sweep's
speed/accuracy Pareto front (accuracy against mean accepted length). Usage:

    python bench/spd/run.py --judge ckpt/spd-judge [--judge ckpt/other-judge] [--thresholds 0.3,0.5,0.7] \
        [--limit 50] [--draft layers:20] [--gamma 2] [--only 0,1,3] [--out bench/spd/results]

Rows are numbered 0 target only, 1 standard SD, 2 judge always, then each judge at each threshold.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any


def rows_of(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    spd = {"draft": args.draft, "gamma": args.gamma, "batch_size": args.batch_size}
    rows = [("target only", "cot", {"batch_size": args.batch_size}),
            ("standard SD", "spd", {**spd, "judge": "none"}),
            ("judge always", "spd", {**spd, "judge": "always"})]
    for judge in args.judge:
        for t in args.thresholds:
            rows.append((f"{Path(judge).name} ≥ {t:g}", "spd",
                         {**spd, "judge": "learned", "judge_path": judge, "threshold": t}))
    return rows


def main() -> None:
    from latentbench.eval.evaluator import EvalRequest, evaluate
    from latentbench.models import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge", required=True, action="append",
                        help="a `latentbench train spd-judge` output directory; repeat to compare judges")
    parser.add_argument("--thresholds", default="0.3,0.5,0.7", type=lambda s: [float(x) for x in s.split(",")])
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--draft", default="layers:20")
    parser.add_argument("--gamma", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--only", default=None, help="comma-separated row numbers to run (0-based); default all")
    parser.add_argument("--partial", action="store_true",
                        help="run nothing: tabulate the rows' samples files so far, on the questions all of them have")
    parser.add_argument("--out", default="bench/spd/results")
    args = parser.parse_args()
    if args.partial:
        return partial_table(args)

    out = Path(args.out)
    lm = load_model(args.model)
    wanted = None if args.only is None else {int(i) for i in args.only.split(",")}
    table = []
    for index, (label, method, config) in enumerate(rows_of(args)):
        if wanted is not None and index not in wanted:
            continue
        record, path = evaluate(EvalRequest(task=args.task, method=method, limit=args.limit, model=args.model,
                                            output_path=str(out / "runs"), method_args=config), lm=lm)
        variant = "flexible" if "accuracy_flexible" in record["metrics"] else "base"
        mm, cost = record["method_metrics"], record["cost"]
        table.append({"row": label, "method": method, "config": config, "results": str(path),
                      "n": record["task"]["n"], "accuracy": record["metrics"][f"accuracy_{variant}"],
                      "interval": record["intervals"].get(f"accuracy_{variant}"),
                      "mean_accepted_length": mm.get("mean_accepted_length", 1.0),
                      "acceptance_rate": mm.get("acceptance_rate"),
                      "judge_accept_share": mm.get("judge_accept_share"),
                      "target_forwards_per_token": mm.get("target_forwards_per_token", 1.0),
                      "tokens_per_s": cost["generated_tokens"] / max(cost["wall_time_s"], 1e-9)})
    finish(args, table, partial=False)


def finish(args: argparse.Namespace, table: list[dict[str, Any]], *, partial: bool) -> None:
    """Ratios against standard SD, the printed table, the JSON and the plot."""
    out = Path(args.out)
    base = next((r for r in table if r["row"] == "standard SD"), None)
    for r in table:
        if base is not None:
            r["accepted_length_vs_sd"] = r["mean_accepted_length"] / base["mean_accepted_length"]
            r["accuracy_minus_sd_points"] = 100 * (r["accuracy"] - base["accuracy"])
            r["tokens_per_s_vs_sd"] = r["tokens_per_s"] / base["tokens_per_s"]
    print_table(table)
    n = table[0]["n"] if table else 0
    stem = out / f"spd-{args.task}-{n}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({
        "task": args.task, "limit": args.limit, "model": args.model, "draft": args.draft, "gamma": args.gamma,
        "judge": args.judge, "machine": platform.processor() or platform.machine(), "partial": partial,
        "rows": table}, indent=2) + "\n")
    plot(table, stem.with_suffix(".png"))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")


def partial_table(args: argparse.Namespace) -> None:
    """The table from interrupted rows: each row's samples file (named as ``eval`` names it), restricted
    to the questions every row has finished, so the rows stay comparable."""
    from latentbench.eval.evaluator import EvalRequest, run_stem
    from latentbench.eval.metrics import bootstrap_intervals
    from latentbench.methods.base import make_method

    wanted = None if args.only is None else {int(i) for i in args.only.split(",")}
    found = {}
    for index, (label, method, config) in enumerate(rows_of(args)):
        req = EvalRequest(task=args.task, method=method, limit=args.limit, model=args.model, method_args=config)
        path = Path(args.out) / "runs" / f"samples-{run_stem(req, args.task, 'test', make_method(method, config))}.jsonl"
        if (wanted is None or index in wanted) and path.is_file():
            found[label] = (method, config, {s["id"]: s for s in map(json.loads, path.read_text().splitlines())
                                             if s["sample"] == 0})
    common = sorted(set.intersection(*(set(q) for *_, q in found.values()))) if found else []
    table = []
    for label, (method, config, by_id) in found.items():
        samples = [by_id[q] for q in common]
        verdicts = [{v: [s["correct"][v]] for v in ("strict", "flexible")} for s in samples]
        # per-sample metrics exist for spd only: a cot row's tokens/s is unknown here (nan), not 0
        mean = {k: sum(s["metrics"][k] for s in samples) / len(samples)
                if samples and all(k in s.get("metrics", {}) for s in samples) else float("nan")
                for k in ("mean_accepted_length", "acceptance_rate", "judge_accept_share",
                          "target_forwards_per_token", "tokens_per_s")}
        table.append({"row": label, "method": method, "config": config, "n": len(samples),
                      "accuracy": sum(v["flexible"][0] for v in verdicts) / max(len(samples), 1),
                      "interval": bootstrap_intervals(verdicts, ("strict", "flexible"), False)["accuracy_flexible"],
                      **mean, "mean_accepted_length": mean["mean_accepted_length"] if method == "spd" else 1.0,
                      "target_forwards_per_token": mean["target_forwards_per_token"] if method == "spd" else 1.0})
    finish(args, table, partial=True)


def print_table(table: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="speculative decoding: ratios against standard SD in the same run")
    for col in ("row", "n", "accuracy [95% CI]", "Δacc vs SD (pts)", "accepted length", "× SD",
                "target fwd/token", "tokens/s", "× SD"):
        t.add_column(col)
    for r in table:
        ci = r["interval"] or [float("nan"), float("nan")]
        t.add_row(r["row"], str(r["n"]), f"{r['accuracy']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]",
                  f"{r.get('accuracy_minus_sd_points', float('nan')):+.1f}", f"{r['mean_accepted_length']:.3f}",
                  f"{r.get('accepted_length_vs_sd', float('nan')):.2f}", f"{r['target_forwards_per_token']:.3f}",
                  f"{r['tokens_per_s']:.2f}", f"{r.get('tokens_per_s_vs_sd', float('nan')):.2f}")
    Console().print(t)


def plot(table: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in table:
        ax.scatter(r["mean_accepted_length"], r["accuracy"], label=r["row"])
    for judge in sorted({r["config"]["judge_path"] for r in table if r["config"].get("judge") == "learned"}):
        sweep = sorted((r for r in table if r["config"].get("judge_path") == judge), key=lambda r: r["mean_accepted_length"])
        ax.plot([r["mean_accepted_length"] for r in sweep], [r["accuracy"] for r in sweep], "--", lw=1)
    ax.legend(fontsize=7)  # not annotations: rows with equal numbers would print over each other
    ax.set_xlabel("mean accepted length (tokens per target forward)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"threshold sweep, n = {table[0]['n'] if table else 0}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
