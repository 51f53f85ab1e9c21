"""Code-task scoring: every reference solution passes, empty bodies and hostile programs fail."""

from __future__ import annotations

import gzip
import json
import math
import os
import socket
import time
from pathlib import Path

import pytest

from latentbench.errors import DataFormatError, DataNotFoundError, UsageError
from latentbench.paths import cache_dir
from latentbench.tasks import sandbox
from latentbench.tasks.code_eval import (
    CodeProblem,
    expected_outputs,
    load_code_problems,
    pass_at_k,
    problem_hash,
    score_programs,
)

bwrap_only = pytest.mark.skipif(not sandbox.bwrap_works(), reason="needs bubblewrap for this guarantee")


@pytest.fixture(scope="module")
def humaneval(data_dir: Path) -> list[CodeProblem]:
    return load_code_problems(data_dir / "humaneval" / "HumanEval.jsonl.gz")


@pytest.fixture(scope="module")
def mbpp(data_dir: Path) -> list[CodeProblem]:
    return load_code_problems(data_dir / "mbppplus" / "MbppPlus.jsonl.gz")


def _by_id(problems: list[CodeProblem], task_id: str) -> CodeProblem:
    return next(p for p in problems if p.task_id == task_id)


def _stub(problem: CodeProblem) -> str:
    """The function with an empty body (MBPP+ prompts are docstrings without a signature)."""
    if problem.kind == "humaneval":
        return problem.prompt + "    pass\n"
    return problem.prompt + f"def {problem.entry_point}(*args, **kwargs):\n    pass\n"


def _synthetic(atol: float = 0.0, inputs: list | None = None) -> CodeProblem:
    return CodeProblem("Synthetic/1", '"""Area of a circle."""\n', "area", "def area(r):\n    return 3.14159 * r * r\n",
                       "mbppplus", base_input=inputs or [[1.0], [2.0], [0.5]], plus_input=[[10.0], [3.0]], atol=atol)


# --- loading --------------------------------------------------------------------------------------

def test_loads_both_datasets_with_kinds(humaneval: list[CodeProblem], mbpp: list[CodeProblem]) -> None:
    assert len(humaneval) == 164 and {p.kind for p in humaneval} == {"humaneval"}
    assert len(mbpp) == 378 and {p.kind for p in mbpp} == {"mbppplus"}
    he0 = humaneval[0]
    assert he0.task_id == "HumanEval/0" and "def check(candidate)" in (he0.test or "")
    assert he0.plus_input == [] and he0.base_input == []


def test_mbpp_inputs_are_deserialized_like_evalplus(mbpp: list[CodeProblem]) -> None:
    assert _by_id(mbpp, "Mbpp/2").base_input[0] == [(3, 4, 5, 6), (5, 7, 4, 10)]  # tuples, not lists
    assert isinstance(_by_id(mbpp, "Mbpp/124").base_input[0][1], complex)
    assert _by_id(mbpp, "Mbpp/793").plus_input == []  # stored as {} upstream
    assert _by_id(mbpp, "Mbpp/6").base_input[0] == [13, 9]  # untouched
    assert any(p.atol > 0 for p in mbpp)


def test_load_errors_name_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError):
        load_code_problems(tmp_path / "missing.jsonl.gz")
    bad = tmp_path / "bad.jsonl.gz"
    with gzip.open(bad, "wt") as f:
        f.write(json.dumps({"task_id": "X/1", "prompt": "p"}) + "\n")
    with pytest.raises(DataFormatError, match=r"bad.jsonl.gz line 1"):
        load_code_problems(bad)


# --- reference solutions pass, empty bodies fail -----------------------------------------------------

def test_humaneval_canonical_pass_and_stubs_fail(humaneval: list[CodeProblem]) -> None:
    good = score_programs(humaneval, [p.program for p in humaneval], workers=2)
    assert [v.task_id for v in good if v.status != "pass"] == []
    assert all(v.base_passed and v.plus_passed is None and v.detail == "ok" for v in good)
    bad = score_programs(humaneval, [_stub(p) for p in humaneval], workers=2)
    assert [v.task_id for v in bad if v.base_passed] == []
    assert all(v.status == "fail" for v in bad)


def test_mbpp_canonical_pass_base_and_plus_and_stubs_fail(mbpp: list[CodeProblem]) -> None:
    good = score_programs(mbpp, [p.program for p in mbpp], workers=2)
    assert [(v.task_id, v.detail) for v in good if not (v.base_passed and v.plus_passed)] == []
    bad = score_programs(mbpp, [_stub(p) for p in mbpp], workers=2)
    assert [v.task_id for v in bad if v.base_passed or v.plus_passed] == []
    assert {v.detail for v in bad} >= {"base input 0: wrong output"}


def test_expected_outputs_are_cached_by_content(mbpp: list[CodeProblem]) -> None:
    problem = _by_id(mbpp, "Mbpp/2")
    first = expected_outputs(problem)
    path = cache_dir("mbppplus_expected") / f"{problem_hash(problem)}.pkl"
    assert path.is_file()
    assert expected_outputs(problem) == first
    assert len(first["base"]) == len(problem.base_input) and len(first["plus"]) == len(problem.plus_input)
    changed = CodeProblem(problem.task_id, problem.prompt, problem.entry_point, problem.canonical_solution,
                          "mbppplus", base_input=problem.base_input[:1], plus_input=problem.plus_input)
    assert problem_hash(changed) != problem_hash(problem)


# --- comparison rules --------------------------------------------------------------------------------

def test_float_tolerance_follows_atol() -> None:
    problem = _synthetic(atol=1e-4)
    close = "def area(r):\n    return 3.14159 * r * r + 5e-5\n"
    far = "def area(r):\n    return 3.14159 * r * r + 5e-4\n"
    as_int = "def area(r):\n    return round(3.14159 * r * r)\n"
    verdicts = score_programs([problem] * 3, [close, far, as_int])
    assert [(v.base_passed, v.plus_passed) for v in verdicts] == [(True, True), (False, False), (False, False)]
    assert verdicts[1].detail == "base input 0: wrong output"


def test_zero_atol_still_allows_float_noise() -> None:
    problem = _synthetic(atol=0)
    noise = "def area(r):\n    return 3.14159 * r * r * (1 + 1e-12)\n"
    off = "def area(r):\n    return 3.14159 * r * r + 1e-3\n"
    assert [v.status for v in score_programs([problem] * 2, [noise, off])] == ["pass", "fail"]


def test_plus_failure_keeps_base(mbpp: list[CodeProblem]) -> None:
    problem = _synthetic()
    only_small = "def area(r):\n    return 3.14159 * r * r if r < 5 else 0.0\n"
    (verdict,) = score_programs([problem], [only_small])
    assert (verdict.base_passed, verdict.plus_passed, verdict.status) == (True, False, "fail")
    assert verdict.detail == "plus input 0: wrong output"


def test_set_and_match_oracles(mbpp: list[CodeProblem]) -> None:
    shared = _by_id(mbpp, "Mbpp/2")  # similar_elements: any order of the common items
    reordered = "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b), reverse=True))\n"
    wrong = "def similar_elements(a, b):\n    return tuple(set(a) | set(b))\n"
    regex = _by_id(mbpp, "Mbpp/794")  # text_starta_endb: only "matched or not" counts
    as_bool = "import re\ndef text_starta_endb(text):\n    return bool(re.search('a.*?b$', text))\n"
    verdicts = score_programs([shared, shared, regex], [reordered, wrong, as_bool])
    assert [v.plus_passed for v in verdicts] == [True, False, True]


def test_slow_but_correct_passes_and_too_slow_fails() -> None:
    problem = _synthetic(inputs=[[1.0]])
    slow = "import time\ndef area(r):\n    time.sleep(0.4)\n    return 3.14159 * r * r\n"
    stuck = "import time\ndef area(r):\n    time.sleep(30)\n    return 3.14159 * r * r\n"
    start = time.monotonic()
    fine, late = score_programs([problem] * 2, [slow, stuck])
    assert fine.status == "pass"
    assert (late.base_passed, late.detail) == (False, "base input 0: timeout")
    assert time.monotonic() - start < 20  # the 1 s per-input floor fired, not the wall clock


def test_chatty_program_and_main_guard_pass() -> None:
    problem = _synthetic()
    chatty = ("def area(r):\n    print('x' * 100_000)\n    return 3.14159 * r * r\n"
              "if __name__ == '__main__':\n    input()\n")
    assert score_programs([problem], [chatty])[0].status == "pass"


def test_length_mismatch_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        score_programs([_synthetic()], [])


# --- hostile programs ----------------------------------------------------------------------------------

HOSTILE = {
    "infinite_loop": "    while True:\n        pass\n",
    "fork_bomb": "    import os\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n",
    "alloc_4gb": "    b = bytearray(4 * 2**30)\n    return True\n",
    "os_exit": "    import os\n    os._exit(0)\n",
    "sys_exit": "    import sys\n    sys.exit(0)\n",
    "kill_parent": "    import os\n    os.kill(os.getppid(), 9)\n    return True\n",
    "stdout_flood": "    import sys\n    for _ in range(1024):\n        sys.stdout.write('x' * 2**20)\n",
    "report_fd_flood": "    import os\n    for _ in range(1024):\n        for fd in range(3, 8):\n"
                       "            try:\n                os.write(fd, b'x' * 2**20)\n            except OSError:\n"
                       "                pass\n",
    "fake_pass_lines": "    import os\n    for fd in range(1, 8):\n        try:\n"
                       "            os.write(fd, b'base pass\\nplus pass\\n')\n        except OSError:\n            pass\n"
                       "    os._exit(0)\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_fails_within_timeout(name: str, humaneval: list[CodeProblem]) -> None:
    if name == "fork_bomb" and sandbox.resolve_backend() == "rlimits" and os.getuid() == 0:
        pytest.skip("without bubblewrap, root cannot be limited in processes")
    problem = humaneval[0]  # has_close_elements: True is a wrong answer for some of its checks
    start = time.monotonic()
    (verdict,) = score_programs([problem], [problem.prompt + HOSTILE[name]], timeout_s=3)
    assert not verdict.base_passed and verdict.status != "pass"
    assert time.monotonic() - start < 15


@pytest.mark.parametrize("name", ["os_exit", "sys_exit", "stdout_flood"])
def test_hostile_program_fails_mbpp(name: str) -> None:
    body = HOSTILE[name] + "    return 3.14159 * r * r\n"
    (verdict,) = score_programs([_synthetic()], [f"def area(r):\n{body}"], timeout_s=3)
    assert not verdict.base_passed and not verdict.plus_passed


@bwrap_only
def test_writing_outside_fails_and_leaves_no_file(tmp_path: Path, humaneval: list[CodeProblem]) -> None:
    problem = humaneval[0]
    targets = [tmp_path / "escaped.txt", Path(__file__).resolve().parents[1] / f"escaped-{os.getpid()}.txt"]
    verdicts = []
    for target in targets:  # a host dir the sandbox cannot see, and the (read-only) repo
        write = f"    open({str(target)!r}, 'w').write('x')\n"
        verdicts += score_programs([problem], [problem.prompt + write + problem.canonical_solution])
    # host paths under /tmp map into the private tmpfs (the write goes nowhere lasting); others are read-only
    for target, verdict in zip(targets, verdicts, strict=True):
        if not target.is_relative_to("/tmp"):
            assert verdict.detail.split(":")[0] == "base OSError"
    assert not any(target.exists() for target in targets)


@bwrap_only
def test_socket_connect_fails(humaneval: list[CodeProblem]) -> None:
    problem = humaneval[0]
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        connect = f"import socket\nsocket.create_connection(('127.0.0.1', {server.getsockname()[1]}), timeout=2)\n"
        (verdict,) = score_programs([problem], [connect + problem.program])
        # inside its own network namespace, 127.0.0.1 is the sandbox's loopback, not ours
        assert not verdict.base_passed and verdict.detail.startswith("load ConnectionRefusedError")
        with pytest.raises(TimeoutError):
            server.accept()


# --- pass@k ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (5, 2, 1, 0.4), (5, 0, 1, 0.0), (5, 0, 5, 0.0), (5, 4, 2, 1.0), (5, 5, 1, 1.0),
    (10, 3, 2, 1 - 21 / 45), (1, 1, 1, 1.0), (200, 7, 100, 1 - math.comb(193, 100) / math.comb(200, 100)),
])
def test_pass_at_k(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, 2, 0), (5, 2, 6), (5, -1, 1)])
def test_pass_at_k_rejects_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
