"""Benchmark: score the 378 MBPP+ canonical solutions in the sandbox, optionally against EvalPlus 0.3.1.

    .venv/bin/python bench/sandbox/run.py [--workers 2] [--out bench/results/sandbox.json]
                                          [--evalplus-python /tmp/evalplus-venv/bin/python]

Each system runs twice in its own child process: "cold" (an empty cache, so the expected outputs are
computed first) and "warm" (expected outputs cached). Wall time is measured from outside, the same way
for both. Memory, the same way for both too: the child's process tree (sandboxed processes included) is
sampled from /proc every 0.2 s; "peak MB" is the largest sum of its processes' proportional set sizes,
"largest MB" the largest single process (also from ``wait4``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = Path(os.environ.get("LATENTBENCH_DATA_DIR", REPO.parent / "shared" / "data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sandbox.json")
    parser.add_argument("--evalplus-python", help="a Python with evalplus==0.3.1 installed (the baseline)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = args.data_dir / "mbppplus" / "MbppPlus.jsonl.gz"
    if args.child:
        return _child(data, args.workers)
    if not data.is_file():
        sys.exit(f"bench: {data} not found; pass --data-dir or set LATENTBENCH_DATA_DIR")
    with tempfile.TemporaryDirectory(prefix="lb-bench-") as tmp:
        rows = _ours(data, args.workers, Path(tmp))
        rows += _evalplus(args.evalplus_python, data, args.workers, Path(tmp))
    _report(rows, args)


def _child(data: Path, workers: int) -> None:
    """Runs in a fresh process: load, score, print one JSON line."""
    from latentbench.tasks.code_eval import load_code_problems, score_programs
    from latentbench.tasks.sandbox import resolve_backend

    problems = load_code_problems(data)
    verdicts = score_programs(problems, [p.program for p in problems], workers=workers)
    failed = [f"{v.task_id}: {v.detail}" for v in verdicts if not v.plus_passed]
    print(json.dumps({"problems": len(problems), "base": sum(v.base_passed for v in verdicts),
                      "plus": sum(bool(v.plus_passed) for v in verdicts), "failed": failed,
                      "backend": resolve_backend(),
                      "evaluator_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _measure(argv: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float, int]:
    """(wall seconds, peak MB of the process tree's summed PSS, peak MB of its largest process, exit code)."""
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
        sampler = _TreePeak(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    sampler.stop.set()
    sampler.join()
    largest = max(usage.ru_maxrss, sampler.largest_kb)  # wait4 covers the reaped tree; bwrap's is sampled
    return wall, sampler.sum_kb / 1024, largest / 1024, os.waitstatus_to_exitcode(status)


class _TreePeak(threading.Thread):
    """Samples, every 0.2 s, the proportional set size (shared pages split among sharers) of a process
    and all its descendants (sandboxed ones included): the peak of the sum, and of the largest one."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.stop, self.sum_kb, self.largest_kb = root, threading.Event(), 0, 0

    def run(self) -> None:
        while not self.stop.wait(0.2):
            sizes = [_pss_kb(pid) for pid in _descendants(self.root)]
            self.sum_kb = max(self.sum_kb, sum(sizes))
            self.largest_kb = max(self.largest_kb, *sizes, 0)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(pid))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _pss_kb(pid: int) -> int:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)


def _ours(data: Path, workers: int, tmp: Path) -> list[dict]:
    env = {**os.environ, "LATENTBENCH_CACHE": str(tmp / "lb-cache")}
    rows = []
    for phase in ("cold", "warm"):
        log = tmp / f"ours-{phase}.log"
        wall, mem, largest, code = _measure([sys.executable, __file__, "--child", "--data-dir", str(data.parents[1]),
                                             "--workers", str(workers)], env, log)
        if code != 0:
            sys.exit(f"bench: our scorer failed ({code}):\n{log.read_text()[-2000:]}")
        result = json.loads(log.read_text().strip().splitlines()[-1])
        rows.append({"system": "latentbench", "phase": phase, "wall_s": wall, "peak_mem_mb": mem,
                     "largest_process_mb": largest, **result})
    return rows


def _evalplus(python: str | None, data: Path, workers: int, tmp: Path) -> list[dict]:
    if not python:
        print("baseline skipped: pass --evalplus-python PATH (a venv with evalplus==0.3.1)")
        return []
    probe = subprocess.run([python, "-c", "import evalplus; print(evalplus.__version__)"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        print(f"baseline skipped: evalplus is not importable with {python}")
        return []
    from latentbench.tasks.code_eval import load_code_problems

    samples = [{"task_id": p.task_id, "solution": p.program} for p in load_code_problems(data)]
    # MBPP_OVERRIDE_PATH makes evalplus read our file instead of downloading; its ground-truth cache
    # lives under XDG_CACHE_HOME, so the first run is cold and the second warm, as for ours
    env = {**os.environ, "MBPP_OVERRIDE_PATH": str(data), "XDG_CACHE_HOME": str(tmp / "ep-cache")}
    rows = []
    for phase in ("cold", "warm"):
        run_dir = tmp / f"evalplus-{phase}"
        run_dir.mkdir()
        path = run_dir / "samples.jsonl"
        path.write_text("".join(json.dumps(s) + "\n" for s in samples))
        wall, mem, largest, code = _measure([python, "-m", "evalplus.evaluate", "--dataset", "mbpp", "--samples",
                                             str(path), "--parallel", str(workers), "--i-just-wanna-run"], env,
                                            run_dir / "log.txt")
        if code != 0:
            print(f"baseline failed ({code}): {(run_dir / 'log.txt').read_text()[-1500:]}")
            return rows
        rows.append({"system": f"evalplus {probe.stdout.strip()}", "phase": phase, "wall_s": wall,
                     "peak_mem_mb": mem, "largest_process_mb": largest,
                     **_evalplus_counts(run_dir / "samples_eval_results.json")})
    return rows


def _evalplus_counts(path: Path) -> dict:
    results = json.loads(path.read_text())["eval"]
    first = [runs[0] for runs in results.values()]
    return {"problems": len(first), "base": sum(r["base_status"] == "pass" for r in first),
            "plus": sum(r["base_status"] == r["plus_status"] == "pass" for r in first),
            "failed": [f"{r['task_id']}: plus {r['plus_status']}" for r in first if r["plus_status"] != "pass"]}


def _report(rows: list[dict], args: argparse.Namespace) -> None:
    header = f"{'system':<16} {'phase':<5} {'problems':>8} {'wall s':>7} {'problems/s':>10} {'peak MB':>8} " \
             f"{'largest MB':>10} {'base pass':>9} {'plus pass':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        r["problems_per_s"] = r["problems"] / r["wall_s"]
        print(f"{r['system']:<16} {r['phase']:<5} {r['problems']:>8} {r['wall_s']:>7.1f} {r['problems_per_s']:>10.2f} "
              f"{r['peak_mem_mb']:>8.0f} {r['largest_process_mb']:>10.0f} {r['base']:>9} {r['plus']:>9}")
    ratios = {}
    for phase in ("cold", "warm"):
        ours = [r for r in rows if r["phase"] == phase and r["system"] == "latentbench"]
        ref = [r for r in rows if r["phase"] == phase and r["system"].startswith("evalplus")]
        if ours and ref:
            ratios[phase] = ref[0]["wall_s"] / ours[0]["wall_s"]
            print(f"speed-up over evalplus ({phase}, its wall time / ours): {ratios[phase]:.2f}x")
    for r in rows:
        if r["failed"]:
            print(f"{r['system']} {r['phase']} not passing plus: {', '.join(r['failed'])}")
    record = {"bench": "sandbox-mbppplus-canonical", "workers": args.workers, "cpus": os.cpu_count(),
              "platform": platform.platform(), "python": platform.python_version(),
              "speedup_over_evalplus": ratios, "rows": rows,
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
