"""Which early-exit depth L makes a useful self-speculative draft: standard SD (judge none) per L.

For each L, ``spd --draft layers:L --judge none`` decodes the same GSM8K train questions (never the test
split: this chooses a default); the baseline in the same run is target-only greedy decoding (``cot``)
of the same questions and budget. Prints acceptance rate, mean accepted length, target forwards per
token and tokens/s with its ratio to target-only; writes the JSON. Usage:

    python bench/spd/draft_depth.py [--depths 12,16,18,20,22] [--limit 4] [--max-new-tokens 96] \
        [--gamma 4] [--out bench/spd/results/draft-depth.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    from latentbench.methods.base import make_method
    from latentbench.models import load_model
    from latentbench.paths import data_dir
    from latentbench.tasks import get_task

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", default="12,16,18,20,22")
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--gamma", type=int, default=4)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--out", default="bench/spd/results/draft-depth.json")
    args = parser.parse_args()

    lm = load_model(args.model)
    task = get_task("gsm8k")
    examples = task.examples("train", limit=args.limit, data_dir=data_dir())
    common = {"max_new_tokens": args.max_new_tokens, "batch_size": args.limit}
    rows = []
    for depth in ["target"] + args.depths.split(","):
        method = make_method("cot", common) if depth == "target" else make_method(
            "spd", {**common, "draft": f"layers:{depth}", "gamma": args.gamma})
        began = time.perf_counter()
        outcomes = list(method.run(lm, task, examples))
        seconds = time.perf_counter() - began
        mean = {k: sum(o.metrics.get(k, 0.0) for o in outcomes) / len(outcomes)
                for k in ("acceptance_rate", "mean_accepted_length", "target_forwards_per_token")}
        if depth == "target":
            mean = {"acceptance_rate": None, "mean_accepted_length": 1.0, "target_forwards_per_token": 1.0}
        rows.append({"draft": "target only" if depth == "target" else f"layers:{depth}", **mean,
                     "tokens_per_s": sum(o.generated_tokens for o in outcomes) / seconds})
    for row in rows:
        row["tokens_per_s_vs_target"] = row["tokens_per_s"] / rows[0]["tokens_per_s"]
        rate = "-" if row["acceptance_rate"] is None else f"{row['acceptance_rate']:.3f}"
        print(f"{row['draft']:>12}  acceptance {rate:>6}  accepted length {row['mean_accepted_length']:.3f}  "
              f"target fwd/token {row['target_forwards_per_token']:.3f}  tokens/s {row['tokens_per_s']:.2f} "
              f"({row['tokens_per_s_vs_target']:.2f}x target only)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
