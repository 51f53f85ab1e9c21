"""The branching-noise table of docs/latent-tree.md: for each τ, latent-tree datasets of the same GSM8K
questions, and whether their labels carry signal (``latentbench.methods.latent_tree.record.tree_stats``).

    OMP_NUM_THREADS=1 python scripts/tau_table.py --limit 20 --num-shards 2 --shard-index 0
    OMP_NUM_THREADS=1 python scripts/tau_table.py --limit 20 --num-shards 2 --shard-index 1

Each τ's questions are split into shards (``generate --num-shards``), so the table can be built in
parts: a run generates (or resumes) its shard of every τ under ``OUT/tau-<τ>/shard-<i>-of-<n>``, then
prints the table over every finished shard (the trees column says how many questions it covers) and
writes ``OUT/tau-table.json``. τ = 0 is run with one branch: without noise every sibling repeats the
same computation, so its statistics are those of a single path (1 distinct answer, no mixed tree,
sibling cosine 1; ``tests/test_generate.py`` checks the cosine).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

COLUMNS = [("tau", "τ"), ("clean_cosine", "noisy·clean cos"), ("trees", "trees"), ("decoded_leaves", "leaves"),
           ("share_correct", "correct leaves"), ("mixed_trees", "mixed trees"),
           ("distinct_answers", "distinct answers"), ("majority_accuracy", "majority acc."),
           ("sibling_latent_cosine", "sibling latent cos"), ("sibling_state_cosine", "sibling state cos")]


def main() -> None:
    from latentbench.generate import GenerateRequest, generate
    from latentbench.models import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taus", default="0.5,1,2,0.25,0", help="comma-separated τ values, run in this order")
    parser.add_argument("--limit", type=int, default=20, help="first N GSM8K test questions")
    parser.add_argument("--num-shards", type=int, default=1)
    parser.add_argument("--shard-index", type=int, default=0, help="the shard this run generates")
    parser.add_argument("--agents", type=int, default=1)
    parser.add_argument("--branches", type=int, default=4)
    parser.add_argument("--latent-steps", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=0, help="judger's budget per leaf (0: the task's)")
    parser.add_argument("--batch-size", type=int, default=10, help="questions decoded together")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="data/tau")
    parser.add_argument("--data-dir", default=None, help="benchmark data (default: $LATENTBENCH_DATA_DIR)")
    args = parser.parse_args()

    out, lm, rows = Path(args.out), None, []
    taus = [float(t) for t in args.taus.split(",")]
    for tau in taus:
        method_args = {"agents": args.agents, "branches": args.branches if tau > 0 else 1, "keep": "all",
                       "latent_steps": args.latent_steps, "max_new_tokens": args.max_new_tokens,
                       "latent_temperature": tau, "batch_size": args.batch_size}
        target = out / f"tau-{tau:g}" / f"shard-{args.shard_index}-of-{args.num_shards}"
        if not (target / "manifest.json").exists():
            lm = lm or load_model(args.model)
            generate(GenerateRequest(task="gsm8k", limit=args.limit, model=args.model, seed=args.seed,
                                     data_dir=args.data_dir, output=str(target), method_args=method_args,
                                     num_shards=args.num_shards, shard_index=args.shard_index), lm=lm)
    for tau in sorted(taus):
        shards = sorted(p for p in (out / f"tau-{tau:g}").glob("shard-*") if (p / "manifest.json").exists())
        rows.append({"tau": tau, "clean_cosine": 1 / math.sqrt(1 + tau * tau), "shards": [p.name for p in shards],
                     **combined_stats(shards, one_branch=tau == 0)})
    print(f"agents {args.agents}, branches {args.branches} (τ = 0: 1), m {args.latent_steps}, keep all, "
          f"judger budget {args.max_new_tokens or 'the task card'}, first {args.limit} GSM8K test questions")
    print("| " + " | ".join(label for _, label in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(_fmt(row.get(key)) for key, _ in COLUMNS) + " |")
    (out / "tau-table.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out / 'tau-table.json'}")


def combined_stats(shards: list[Path], one_branch: bool) -> dict[str, Any]:
    """``tree_stats`` over several shard datasets: counts add up, per-tree means are weighted by trees."""
    from latentbench.methods.latent_tree.record import tree_stats
    from latentbench.store import open_dataset

    parts = [tree_stats(open_dataset(p), cosines=True) for p in shards]
    trees = sum(p["trees"] for p in parts)
    if not trees:
        return {"trees": 0}
    leaves, correct = sum(p["decoded_leaves"] for p in parts), sum(p["correct_leaves"] for p in parts)
    stats: dict[str, Any] = {"trees": trees, "decoded_leaves": leaves, "correct_leaves": correct,
                             "share_correct": correct / max(leaves, 1)}
    for key in ("mixed_trees", "distinct_answers", "majority_accuracy", "sibling_latent_cosine", "sibling_state_cosine"):
        known = [(p[key], p["trees"]) for p in parts if p.get(key) is not None]
        stats[key] = sum(v * n for v, n in known) / sum(n for _, n in known) if known else None
    if one_branch:  # one branch: no sibling pairs, but siblings would be identical
        stats |= {"sibling_latent_cosine": 1.0, "sibling_state_cosine": 1.0}
    return stats


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "–" if value is None else str(value)


if __name__ == "__main__":
    main()
