"""The floor under any MBPP+ scorer: how long the canonical solutions themselves take.

Runs each problem's canonical solution in plain Python (one fresh process per problem, no sandbox,
no output checks), calls its entry point on every base and plus input, and sums the call times. A
scorer running these programs on W workers needs at least max(longest problem, sum / W) of wall
time, whatever its own overhead.

    .venv/bin/python bench/sandbox/canonical_floor.py [--data-dir DIR] [--workers 2]
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import time
from pathlib import Path

from run import DEFAULT_DATA  # bench/sandbox/run.py: the same data as the benchmark

from latentbench.tasks.code_eval import CodeProblem, load_code_problems


def _time(problem: CodeProblem, out: multiprocessing.Queue) -> None:
    scope: dict = {}
    exec(problem.program, scope)  # noqa: S102  the dataset's own canonical solutions, as the scorers run them
    fn = scope[problem.entry_point]
    start = time.perf_counter()
    for args in problem.base_input + problem.plus_input:
        try:
            fn(*copy.deepcopy(args))
        except Exception:  # noqa: BLE001, S110  a few canonical solutions raise on purpose
            pass
    out.put(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    problems = load_code_problems(args.data_dir / "mbppplus" / "MbppPlus.jsonl.gz")
    times = []
    for problem in problems:
        out: multiprocessing.Queue = multiprocessing.Queue()
        proc = multiprocessing.Process(target=_time, args=(problem, out))
        proc.start()
        times.append((out.get(timeout=600), problem.task_id))
        proc.join()
    times.sort(reverse=True)
    total = sum(t for t, _ in times)
    print(f"{len(times)} problems, canonical calls {total:.1f} s in all; longest: "
          + ", ".join(f"{task} {t:.1f} s" for t, task in times[:5]))
    print(f"floor on {args.workers} workers: {max(times[0][0], total / args.workers):.1f} s of wall time")


if __name__ == "__main__":
    main()
