"""Loss curves of ``latentbench train`` runs: every logged term per step, as a plot and a markdown table.

    python bench/halting/curves.py ckpt/halting-A ckpt/halting-C --out bench/halting/results/curves.png

Runs are drawn one after another on a shared step axis (a run started with ``--init`` continues the
previous one). The table gives each term's mean over the first and the last five steps of each run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TERMS = ("loss", "ce", "align", "stop_bce", "expected_latents")


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="training output directories (with metrics.jsonl)")
    parser.add_argument("--out", default="bench/halting/results/curves.png")
    args = parser.parse_args()

    fig, axes = plt.subplots(1, len(TERMS), figsize=(4 * len(TERMS), 3.2))
    offset = 0
    print("| run | term | first 5 steps | last 5 steps | validation (end) |\n|---|---|---|---|---|")
    for index, run in enumerate(args.runs):
        lines = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]
        train = [x for x in lines if x["split"] == "train"]
        val = [x for x in lines if x["split"] == "val"]
        for ax, term in zip(axes, TERMS, strict=True):
            points = [(offset + x["step"], x[term]) for x in train if term in x]
            if points:
                ax.plot(*zip(*points, strict=True), color=f"C{index}", label=Path(run).name)
                ax.set_title(term)
                ax.set_xlabel("step")
                head, tail = [v for _, v in points[:5]], [v for _, v in points[-5:]]
                end = val[-1].get(term) if val else None
                print(f"| {Path(run).name} | {term} | {sum(head) / len(head):.3f} | {sum(tail) / len(tail):.3f} | "
                      f"{'' if end is None else f'{end:.3f}'} |")
        offset += max((x["step"] for x in train), default=0)
    axes[0].legend()
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
