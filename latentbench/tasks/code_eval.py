"""Code-task scoring: HumanEval (its ``check`` function) and MBPP+ (EvalPlus base and plus inputs).

Every program runs in ``latentbench.tasks.sandbox``, one sandboxed process per (problem, program)
that runs all of that problem's inputs. MBPP+ expected outputs come from the canonical solution,
run the same way and cached on disk by content hash. Output comparison follows EvalPlus 0.3.1:
exact equality, else (floats) ``np.allclose`` with the task's atol (1e-6 when it is 0), plus the
handful of task-specific oracles EvalPlus ships for MBPP+ v0.2.0.

The code that runs inside the sandbox is ``code_harness.py`` beside this file: a standalone script
with only light standard-library imports (every run pays for its start-up), never imported here.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import math
import os
import pickle
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from latentbench.errors import DataFormatError, DataNotFoundError, UsageError
from latentbench.paths import cache_dir
from latentbench.tasks.sandbox import Backend, Limits, RunResult, run_python

MIN_TIME_LIMIT_S = 1.0  # per MBPP+ input, as EvalPlus: max(1 s, 4 x the canonical solution's time)
TIME_LIMIT_FACTOR = 4.0
MAX_INPUT_BUDGET_S = 60.0  # cap on the summed per-input limits that the wall clock allows
EXPECTED_TIMEOUT_S = 300.0  # computing expected outputs runs trusted code over every input
HARNESS_VERSION = "3"  # part of the expected-output cache key
BIG_OUTPUT_BYTES = 2**20  # expected outputs over this (pickled) are recomputed in the run instead

# --- problems --------------------------------------------------------------------------------------

# MBPP+ stores inputs as JSON; these tasks take tuples, sets or complex numbers (EvalPlus knows the same).
_DESERIALIZE_GROUPS: dict[str, tuple[int, ...]] = {
    "args": (2, 116, 132, 222, 261, 273, 394, 421, 424, 429, 470, 560, 579, 596, 616, 630, 726, 740, 744, 809),
    "items": (63, 64, 70, 94, 120, 237, 272, 299, 409, 473, 614, 780),
    "first_items": (75, 413, 753), "second": (106, 750), "first": (250, 405, 446, 720, 763, 808),
    "nested": (259, 445), "deep": (580, 615, 791), "124": (124,), "252": (252,), "278": (278,), "722": (722,),
}


def _deep_tuple(x: Any) -> Any:
    return tuple(_deep_tuple(v) for v in x) if isinstance(x, list) else x


_CONVERTERS: dict[str, Callable[[list], list]] = {
    "args": lambda a: [tuple(x) for x in a],
    "items": lambda a: [[tuple(y) for y in x] for x in a],
    "first_items": lambda a: [[tuple(y) for y in a[0]], *a[1:]],
    "second": lambda a: [a[0], tuple(a[1]), *a[2:]],
    "first": lambda a: [tuple(a[0]), *a[1:]],
    "nested": lambda a: [tuple(tuple(y) for y in x) for x in a],
    "deep": lambda a: [_deep_tuple(x) for x in a],
    "124": lambda a: [float(a[0]), complex(a[1])],
    "252": lambda a: [complex(a[0])],
    "278": lambda a: [tuple(tuple(y) if isinstance(y, list) else y for y in a[0])],
    "722": lambda a: [{k: tuple(v) for k, v in a[0].items()}, *a[1:]],
}
_DESERIALIZE = {n: _CONVERTERS[g] for g, ids in _DESERIALIZE_GROUPS.items() for n in ids}


@dataclass(frozen=True)
class CodeProblem:
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    kind: Literal["humaneval", "mbppplus"]
    test: str | None = None  # HumanEval: code defining check(candidate)
    base_input: list[list[Any]] = field(default_factory=list)  # MBPP+: one argument list per call
    plus_input: list[list[Any]] = field(default_factory=list)
    atol: float = 0.0

    @classmethod
    def from_humaneval(cls, record: dict[str, Any]) -> CodeProblem:
        return cls(_text(record, "task_id"), _text(record, "prompt"), _text(record, "entry_point"),
                   _text(record, "canonical_solution"), "humaneval", test=_text(record, "test"))

    @classmethod
    def from_mbppplus(cls, record: dict[str, Any]) -> CodeProblem:
        task_id = _text(record, "task_id")
        convert = _DESERIALIZE.get(_task_number(task_id), list)
        inputs = {}
        for name in ("base_input", "plus_input"):
            calls = record[name] or []  # Mbpp/793 stores "no plus inputs" as {}
            if not isinstance(calls, list) or not all(isinstance(args, list) for args in calls):
                raise TypeError(f"{task_id}: {name} must be a list of argument lists")
            inputs[name] = [convert(args) for args in calls]
        return cls(task_id, _text(record, "prompt"), _text(record, "entry_point"),
                   _text(record, "canonical_solution"), "mbppplus", atol=float(record.get("atol") or 0), **inputs)

    @property
    def program(self) -> str:
        """The canonical solution as a complete program."""
        return self.prompt + self.canonical_solution


def _text(record: dict[str, Any], key: str) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise TypeError(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def _task_number(task_id: str) -> int:
    """The MBPP task number (keys of the input and oracle tables); -1 for anything else."""
    prefix, _, tail = task_id.partition("/")
    return int(tail) if prefix == "Mbpp" and tail.isdigit() else -1


def load_code_problems(path: str | os.PathLike) -> list[CodeProblem]:
    """Read HumanEval or MBPP+ (EvalPlus format) from .jsonl or .jsonl.gz; the kind comes from the fields."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    problems = []
    with opener(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                make = CodeProblem.from_mbppplus if "base_input" in record else CodeProblem.from_humaneval
                problems.append(make(record))
            except (ValueError, KeyError, TypeError) as err:
                raise DataFormatError(f"{path} line {number}: not a HumanEval or MBPP+ record ({err})") from err
    return problems


# --- verdicts and scoring ---------------------------------------------------------------------------

VerdictStatus = Literal["pass", "fail", "timeout", "killed", "error"]


@dataclass
class CodeVerdict:
    task_id: str
    base_passed: bool
    plus_passed: bool | None  # None for HumanEval (no plus tests)
    status: VerdictStatus
    detail: str  # one short line: "ok", "plus input 17: wrong output", "timeout after 10.0s", ...


def score_programs(problems: Sequence[CodeProblem], programs: Sequence[str], *, workers: int = 2,
                   timeout_s: float = 10.0, progress: bool = False, backend: Backend = "auto") -> list[CodeVerdict]:
    """Run ``programs[i]`` (prompt + completion, defining the entry point) against ``problems[i]``.

    HumanEval: ``timeout_s`` bounds the whole check. MBPP+: each input gets max(1 s, 4 x canonical
    time); the run gets ``timeout_s`` plus, per phase, the sum of those limits (capped at 60 s).
    The longest problems (by the canonical solution's time) start first, so none is left as a tail."""
    if len(problems) != len(programs):
        raise UsageError(f"score_programs: {len(problems)} problems but {len(programs)} programs")
    if workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers}")
    with ThreadPoolExecutor(workers) as pool:
        mbpp = {problem_hash(p): p for p in problems if p.kind == "mbppplus"}
        expected = dict(zip(mbpp, pool.map(lambda p: expected_outputs(p, backend=backend), mbpp.values()),
                            strict=True))
        oracles = [expected[problem_hash(p)] if p.kind == "mbppplus" else None for p in problems]
        order = sorted(range(len(problems)), key=lambda i: -_cost(oracles[i]))
        jobs = {i: pool.submit(_score_one, problems[i], programs[i], oracles[i], timeout_s, backend) for i in order}
        _progress(list(jobs.values()), progress)
        return [jobs[i].result() for i in range(len(problems))]


def _cost(expected: dict | None) -> float:
    return sum(expected["base_time"]) + sum(expected["plus_time"]) if expected else 0.0


def _progress(jobs: list[Future], show: bool) -> None:
    if show:
        from rich.progress import track

        for _ in track(as_completed(jobs), total=len(jobs), description="scoring programs"):
            pass


def _score_one(problem: CodeProblem, program: str, expected: dict | None, timeout_s: float,
               backend: Backend) -> CodeVerdict:
    if problem.kind == "humaneval":
        job = {"mode": "humaneval", "test": problem.test, "entry_point": problem.entry_point}
        wall = timeout_s
    else:
        assert expected is not None
        job = {"mode": "mbppplus", "entry_point": problem.entry_point, "oracle": _task_number(problem.task_id),
               "atol": problem.atol}
        wall = timeout_s
        for phase, inputs in (("base", problem.base_input), ("plus", problem.plus_input)):
            limits = [max(MIN_TIME_LIMIT_S, TIME_LIMIT_FACTOR * t) for t in expected[f"{phase}_time"]]
            recompute = set(expected[f"{phase}_recompute"])
            job[phase] = (inputs, expected[phase], limits, recompute)
            wall += min(MAX_INPUT_BUDGET_S, sum(limits)) + sum(expected[f"{phase}_time"][i] for i in recompute)
            if recompute:
                job["reference"] = problem.program
    result, report = _run_harness(program, job, wall, backend)
    return _verdict(problem, result, report)


def _verdict(problem: CodeProblem, result: RunResult, report: dict[str, str]) -> CodeVerdict:
    base = report.get("base") == "pass"
    plus = None if problem.kind == "humaneval" else base and report.get("plus") == "pass"
    if base and plus is not False:
        return CodeVerdict(problem.task_id, True, plus, "pass", "ok")
    status: VerdictStatus
    failed = next((f"{ph} {report[ph].removeprefix('fail ')}" for ph in ("load", "base", "plus")
                   if report.get(ph, "pass") != "pass"), None)
    if result.status == "timeout":
        status, detail = "timeout", f"timeout after {result.duration_s:.1f}s"
    elif result.status in ("killed", "output_limit"):
        status, detail = "killed", f"killed ({result.status}, returncode {result.returncode})"
    elif failed:
        status, detail = "fail", failed
    else:  # no verdict line: the program ended the process (os._exit, exit in a thread, ...)
        status, detail = "error", f"exited before reporting (returncode {result.returncode})"
    return CodeVerdict(problem.task_id, base, plus, status, detail[:200])


def _run_harness(program: str, job: dict, wall_s: float, backend: Backend,
                 output_bytes: int = 64 * 1024) -> tuple[RunResult, dict[str, str]]:
    """One sandboxed run of the harness. A random token starts every report line, so only lines the
    harness printed after finishing a phase count (a program exiting early prints none)."""
    token = secrets.token_hex(16)
    files = {"program.py": program.encode(), "job.pkl": pickle.dumps(job)}
    limits = Limits(timeout_s=wall_s, output_bytes=output_bytes)
    # one hash seed for the canonical run and every candidate, so set iteration orders agree
    result = run_python(_harness_source(), files=files, stdin=f"{token}\n".encode(),
                        env={"PYTHONHASHSEED": "0"}, limits=limits, backend=backend)
    report: dict[str, str] = {}
    for line in result.stdout.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == token:
            phase, _, outcome = rest.partition(" ")
            report[phase] = outcome
    return result, report


# --- expected outputs (MBPP+) -----------------------------------------------------------------------

@cache
def _harness_source() -> str:
    """The standalone script the sandbox runs (a module file, so it is linted and read once)."""
    return Path(__file__).with_name("code_harness.py").read_text()


def problem_hash(problem: CodeProblem) -> str:
    """Content hash of everything the expected outputs depend on (stable across processes)."""
    key = [HARNESS_VERSION, BIG_OUTPUT_BYTES, problem.task_id, problem.entry_point, problem.program,
           _stable(problem.base_input), _stable(problem.plus_input)]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32]


def _stable(x: Any) -> Any:
    """A JSON-able form that keeps types apart and orders sets and dicts (set order varies by process)."""
    if isinstance(x, (list, tuple)):
        return [type(x).__name__, [_stable(v) for v in x]]
    if isinstance(x, (set, frozenset)):
        return [type(x).__name__, sorted(json.dumps(_stable(v)) for v in x)]
    if isinstance(x, dict):
        return ["dict", sorted((json.dumps(_stable(k)), _stable(v)) for k, v in x.items())]
    if isinstance(x, (float, complex)):
        return [type(x).__name__, repr(x)]
    return x


def expected_outputs(problem: CodeProblem, *, backend: Backend = "auto") -> dict[str, list]:
    """{"base", "plus", "base_time", "plus_time", "base_recompute", "plus_recompute"} from the canonical
    solution, cached by content hash. Outputs too big to ship are None and listed under *_recompute."""
    path = cache_dir("mbppplus_expected") / f"{problem_hash(problem)}.pkl"
    if path.is_file():
        with open(path, "rb") as f:  # our own cache, written below from trusted canonical outputs
            return pickle.load(f)
    job = {"mode": "expected", "entry_point": problem.entry_point, "oracle": _task_number(problem.task_id),
           "base": (problem.base_input,), "plus": (problem.plus_input,), "big": BIG_OUTPUT_BYTES}
    result, report = _run_harness(problem.program, job, EXPECTED_TIMEOUT_S, backend, output_bytes=256 * 2**20)
    if "expected" not in report:
        raise RuntimeError(f"{problem.task_id}: canonical solution failed in the sandbox ({result.status}): "
                           f"{report or result.stderr[-300:]}")
    expected = pickle.loads(base64.b64decode(report["expected"]))
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(pickle.dumps(expected))
    os.replace(tmp, path)  # atomic: concurrent runs never read half a file
    return expected


# --- pass@k -----------------------------------------------------------------------------------------

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), as a stable product."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


# --- the harness: runs inside the sandbox as __main__ ----------------------------------------------
# Protocol: stdin carries a random token; in/job.pkl the job; in/program.py the program. Every verdict
# is a line "<token> <phase> <outcome>" on a private copy of stdout; the program's own stdin, stdout
# and stderr are /dev/null. Phases stop at the first failing input (the rest cannot change the verdict).
