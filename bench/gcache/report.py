"""``gcache`` on one set of questions: the learned graph against fixed topologies, and its edge
probabilities before and after training.

Reads finished ``latentbench eval TASK --method gcache`` results (one per row, same task and questions)
and prints accuracy with its 95% bootstrap interval, answer tokens, cache positions passed and edges per
question, and each row's accuracy and cache traffic relative to the first row (ratios within one table).
With ``--checkpoint`` it also loads the LM and gives, over the same questions, the mean probability of
every candidate edge under the untrained policy (the trainer's initialisation: same seed) and the
trained one. Usage:

    python bench/gcache/report.py RESULTS.json... [--checkpoint ckpt/gcache-gsm8k] [--out bench/gcache/results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def row_label(record: dict[str, Any]) -> str:
    config = record["method"]["config"]
    label = f"graph={config['graph']}"
    if config["graph"] == "learned":
        label += f" ({'trained: ' + Path(config['checkpoint']).name if config.get('checkpoint') else 'untrained'})"
    if config.get("control", "off") != "off":
        label += f", control={config['control']}"
    return label


def result_row(path: Path) -> dict[str, Any]:
    record = json.loads(path.read_text())
    n = record["task"]["n"]
    mm, cost = record["method_metrics"], record["cost"]
    return {"row": row_label(record), "results": str(path), "n": n,
            "accuracy": record["metrics"]["accuracy_flexible"], "ci95": record["intervals"]["accuracy_flexible"],
            "tokens_per_q": cost["generated_tokens_mean"], "cache_positions_per_q": mm["cache_positions_passed"],
            "decision_positions_per_q": mm["decision_cache_positions"], "edges_per_q": mm["edges"],
            "agents": mm["agents"], "wall_s_per_q": cost["wall_time_s"] / n,
            "question_ids": sorted(json.loads(line)["id"] for line in _samples(record, path))}


def _samples(record: dict[str, Any], path: Path) -> list[str]:
    samples = path.parent / Path(record["samples_file"]).name if record.get("samples_file") else None
    return samples.read_text().splitlines() if samples and samples.is_file() else []


def edge_probabilities(checkpoint: str, task_name: str, limit: int) -> dict[str, Any]:
    """Mean p(i→j) over the first ``limit`` questions, untrained (trainer's seed) and trained."""
    import torch
    from accelerate.utils import set_seed

    from latentbench.methods.gcache.model import GCacheModel, embed_texts
    from latentbench.methods.gcache.pipeline import graph_setup
    from latentbench.methods.gcache.train import GCacheTrainConfig
    from latentbench.methods.prompts import question_text
    from latentbench.models import load_model
    from latentbench.paths import data_dir
    from latentbench.tasks import get_task
    from latentbench.train.checkpoint import load_checkpoint

    record = json.loads((Path(checkpoint) / "config.json").read_text())
    cfg = GCacheTrainConfig(**record["config"])
    lm, task = load_model(cfg.model), get_task(task_name)
    setup = graph_setup(lm, cfg, task)
    questions = [question_text(task, ex) for ex in task.examples(limit=limit, data_dir=data_dir())]
    embeddings = embed_texts(lm, questions)
    set_seed(cfg.seed)  # as run_training does before build: the untrained policy is the run's initialisation
    untrained = GCacheModel.for_model(lm, cfg).eval()
    trained = GCacheModel.for_model(lm, cfg).eval()
    load_checkpoint(checkpoint, trained)
    out: dict[str, Any] = {"roles": setup.roles, "questions": len(questions)}
    for name, module in (("untrained", untrained), ("trained", trained)):
        with torch.no_grad():
            probs = torch.stack([module.policy(torch.cat([setup.role_embeddings, e.expand(len(setup.roles), -1)], -1),
                                               setup.edge_index, cfg.edge_temperature) for e in embeddings])
        mean = probs.mean(0)
        out[name] = {f"{i}->{j}": round(float(mean[i, j]), 4) for i in range(len(setup.roles))
                     for j in range(len(setup.roles)) if i != j}
        gates = 2 * torch.sigmoid(module.fuser.gate_logits.detach())
        out[name + "_fuser_gates"] = [round(float(g), 4) for g in gates]
    return out


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="gcache eval results JSON files; the first row is the reference")
    parser.add_argument("--checkpoint", default=None, help="a `latentbench train gcache` output: edge probabilities")
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--out", default="bench/gcache/results")
    args = parser.parse_args()

    rows = [result_row(Path(p)) for p in args.results]
    if len({tuple(r["question_ids"]) for r in rows}) > 1:
        raise SystemExit("error: the results were not run on the same questions")
    ref = rows[0]
    table = Table(title=f"gcache on {args.task}, n={ref['n']} (same questions)")
    for col in ("row", "accuracy [95% CI]", "tokens/q", "cache positions/q", "edges/q", "wall s/q",
                "acc − ref", "positions ÷ ref"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["row"], f"{r['accuracy']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]",
                      f"{r['tokens_per_q']:.1f}", f"{r['cache_positions_per_q']:.0f}", f"{r['edges_per_q']:.2f}",
                      f"{r['wall_s_per_q']:.1f}", f"{r['accuracy'] - ref['accuracy']:+.3f}",
                      f"{r['cache_positions_per_q'] / ref['cache_positions_per_q']:.2f}×")
    console = Console(width=200)
    console.print(table)
    report: dict[str, Any] = {"task": args.task, "rows": [{k: v for k, v in r.items() if k != "question_ids"}
                                                          for r in rows]}
    if args.checkpoint:
        report["edge_probabilities"] = probs = edge_probabilities(args.checkpoint, args.task, ref["n"])
        edges = Table(title=f"mean edge probability over the {probs['questions']} questions (roles {probs['roles']})")
        for col in ("edge", "untrained", "trained", "change"):
            edges.add_column(col)
        for edge, before in probs["untrained"].items():
            after = probs["trained"][edge]
            edges.add_row(edge, f"{before:.3f}", f"{after:.3f}", f"{after - before:+.3f}")
        console.print(edges)
        console.print(f"fuser gates per layer, trained: {probs['trained_fuser_gates']}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.task}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out / f'{args.task}.json'}")


if __name__ == "__main__":
    main()
