"""The branching-noise table of docs/latent-tree.md: for each τ, a latent-tree dataset of the same
GSM8K questions, and whether its labels carry signal (``latentbench.methods.latent_tree.record.tree_stats``).

    OMP_NUM_THREADS=1 python scripts/tau_table.py --limit 20 --out data/tau-a1

Each τ's dataset is generated (or resumed; a finished one is only read) under ``OUT/tau-<τ>``, so an
interrupted table continues where it stopped. τ = 0 is run with one branch: without noise every
sibling repeats the same computation, so its statistics are those of a single path (1 distinct
answer, no mixed tree, sibling cosine 1; `tests/test_generate.py` checks the cosine). Prints a
markdown table and writes ``OUT/tau-table.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

COLUMNS = [("tau", "τ"), ("clean_cosine", "noisy·clean cos"), ("trees", "trees"), ("decoded_leaves", "leaves"),
           ("share_correct", "correct leaves"), ("mixed_trees", "mixed trees"),
           ("distinct_answers", "distinct answers"), ("majority_accuracy", "majority acc."),
           ("sibling_latent_cosine", "sibling latent cos"), ("sibling_state_cosine", "sibling state cos")]


def main() -> None:
    from latentbench.generate import GenerateRequest, generate
    from latentbench.methods.latent_tree.record import tree_stats
    from latentbench.models import load_model
    from latentbench.store import open_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taus", default="0.5,1,0.25,2,0", help="comma-separated τ values, run in this order")
    parser.add_argument("--limit", type=int, default=20, help="first N GSM8K test questions")
    parser.add_argument("--agents", type=int, default=1)
    parser.add_argument("--branches", type=int, default=4)
    parser.add_argument("--latent-steps", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=160, help="judger's budget per leaf")
    parser.add_argument("--batch-size", type=int, default=5, help="questions decoded together")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="data/tau-a1")
    parser.add_argument("--data-dir", default=None, help="benchmark data (default: $LATENTBENCH_DATA_DIR)")
    args = parser.parse_args()

    out, lm, rows = Path(args.out), None, []
    for tau in [float(t) for t in args.taus.split(",")]:
        method_args = {"agents": args.agents, "branches": args.branches if tau > 0 else 1, "keep": "all",
                       "latent_steps": args.latent_steps, "max_new_tokens": args.max_new_tokens,
                       "latent_temperature": tau, "batch_size": args.batch_size}
        target = out / f"tau-{tau:g}"
        if not (target / "manifest.json").exists():
            lm = lm or load_model(args.model)
            generate(GenerateRequest(task="gsm8k", limit=args.limit, model=args.model, seed=args.seed,
                                     data_dir=args.data_dir, output=str(target), method_args=method_args), lm=lm)
        stats = tree_stats(open_dataset(target), cosines=True)
        if tau == 0:  # one branch: no sibling pairs, but siblings would be identical
            stats |= {"sibling_latent_cosine": 1.0, "sibling_state_cosine": 1.0}
        # a noisy latent's cosine with its un-noised value when both have the mean embedding norm
        rows.append({"tau": tau, "clean_cosine": 1 / math.sqrt(1 + tau * tau), **method_args, **stats})

    rows.sort(key=lambda row: row["tau"])
    print("| " + " | ".join(label for _, label in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(_fmt(row.get(key)) for key, _ in COLUMNS) + " |")
    (out / "tau-table.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out / 'tau-table.json'}")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "–" if value is None else str(value)


if __name__ == "__main__":
    main()
