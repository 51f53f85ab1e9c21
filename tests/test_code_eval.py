"""Code-task scoring: every reference solution passes, empty bodies and hostile programs fail."""

from __future__ import annotations

import gzip
import json
import marshal
import math
import os
import signal
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sandbox_attacks as attacks
from sandbox_attacks import BACKENDS, HAS_UNSHARE, assert_nothing_left, bwrap_only

from latentbench.errors import DataFormatError, DataNotFoundError, UsageError
from latentbench.paths import cache_dir
from latentbench.tasks.code_eval import (
    CodeProblem,
    expected_outputs,
    load_code_problems,
    pass_at_k,
    problem_hash,
    score_programs,
)
from latentbench.tasks.code_harness import decode, encode


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


def _synthetic(atol: float = 0.0, inputs: list | None = None, entry: str = "area") -> CodeProblem:
    return CodeProblem("Synthetic/1", '"""Area of a circle."""\n', entry, f"def {entry}(r):\n    return 3.14159 * r * r\n",
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
# Each does its attack and then returns the right answer, so it passes only if the attack worked.

HOSTILE = {
    "infinite_loop": "    while True:\n        pass\n",
    "fork_bomb": "    import os\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n",
    "alloc_4gb": "    b = bytearray(4 * 2**30)\n",
    "os_exit": "    import os\n    os._exit(0)\n",
    "sys_exit": "    import sys\n    sys.exit(0)\n",
    "report_fd_flood": "    import os\n    for _ in range(1024):\n        for fd in range(3, 8):\n"
                       "            try:\n                os.write(fd, b'x' * 2**20)\n            except OSError:\n"
                       "                pass\n",
    "fake_verdicts": "    import os, struct\n    for fd in range(1, 8):\n        for kind in b'RPV':\n            try:\n"
                     "                os.write(fd, struct.pack('>cI', bytes([kind]), 0))\n"
                     "            except OSError:\n                pass\n    os._exit(0)\n",
    "kill_parent": "    import os\n    os.kill(os.getppid(), 9)\n",
    "kill_harness": "    import os, signal\n    os.kill({test_pid}, signal.SIGUSR1)\n",
    "ptrace_parent": "    import ctypes, os\n    assert ctypes.CDLL(None).ptrace(16, os.getppid(), 0, 0) == 0\n",
    "ctypes_kill": "    import ctypes\n    ctypes.CDLL(None).kill({test_pid}, 10)\n",
    "posix_spawn": "    import os\n    os.posix_spawn('/bin/sh', ['sh', '-c', 'touch {marker_file}'], {{}})\n",
    "setsid_child": "    import os, time\n    if os.fork() == 0:\n        os.setsid()\n        time.sleep(60)\n",
    "patch_the_test": "    import gc\n    for o in gc.get_objects():\n        if getattr(o, '__name__', '') == 'check':\n"
                      "            o.__code__ = (lambda candidate: None).__code__\n    return -1\n",
    "forged_eq": "    class Yes:\n        def __eq__(self, other):\n            return True\n"
                 "        __hash__ = object.__hash__\n    return Yes()\n",
    "forged_hash": "    class Zero:\n        def __hash__(self):\n            return 0\n        def __eq__(self, other):\n"
                   "            return True\n    return Zero()\n",
    "int_subclass": "    class Int(int):\n        def __eq__(self, other):\n            return True\n"
                    "        __hash__ = int.__hash__\n    return Int(-1)\n",
    # isolation: only bubblewrap hides the host
    "read_home_canary": "    assert 0, open({home_canary!r}).read()\n",
    "read_tmp_canary": "    assert 0, open({tmp_canary!r}).read()\n",
    "unlink_ctypes": "    import ctypes\n    assert ctypes.CDLL(None).unlink({tmp_canary!r}.encode()) == 0\n",
    "write_outside": "    open({repo_file!r}, 'w').write('x')\n",
    # namespaces: bubblewrap, or the fallback where unshare works
    "proc_environ": "    import os\n    found = []\n    for p in os.listdir('/proc'):\n        try:\n"
                    "            found.append(open(f'/proc/{{p}}/environ', 'rb').read())\n        except OSError:\n"
                    "            pass\n    assert 0, [f for f in found if b'LB_SECRET' in f]\n",
    "socket": "    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
}
ISOLATION = {"read_home_canary", "read_tmp_canary", "unlink_ctypes", "write_outside"}
NAMESPACES = {"proc_environ", "socket"}


def _double() -> CodeProblem:
    """A HumanEval-style problem whose entry point names this test process (to find leftovers by)."""
    entry = f"double_{os.getpid()}"
    test = ("def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-3) == -6\n"
            "    assert {candidate(0)} == {0} and {'k': candidate(1)} == {'k': 2}\n")
    return CodeProblem("Hostile/0", f"def {entry}(x):\n    \"\"\"Twice x.\"\"\"\n", entry, "    return 2 * x\n",
                       "humaneval", test=test)


@pytest.fixture
def attack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """What the hostile programs aim at, checked untouched afterwards: canaries in the home directory
    and the host's /tmp, a file in the repo, a listening socket, a secret environment, our own process
    (a SIGUSR1 handler notes any signal that reaches it)."""
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    tmp_canary = tmp_path / "canary.txt"
    tmp_canary.write_text("tmp-secret-91c2")
    # outside the sandbox's private /tmp even when the checkout lives under /tmp (there, the interpreter's
    # bind mount makes the checkout's path exist, writable and private, inside the sandbox's tmpfs)
    repo_file = Path.home() / f"escaped-{os.getpid()}.txt"
    with attacks.home_canary() as home_canary, attacks.secret_process(), socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.2)
        yield {"home_canary": str(home_canary), "tmp_canary": str(tmp_canary), "repo_file": str(repo_file),
               "marker_file": str(tmp_path / "spawned"), "port": server.getsockname()[1], "test_pid": os.getpid(),
               "received": received, "server": server}
        with pytest.raises(TimeoutError):
            server.accept()
        assert home_canary.read_text() == attacks.HOME_SECRET and tmp_canary.read_text() == "tmp-secret-91c2"
    signal.signal(signal.SIGUSR1, previous)
    assert received == []
    assert not repo_file.exists() and not (tmp_path / "spawned").exists()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_fails_and_harms_nothing(name: str, backend: str, attack: dict[str, Any]) -> None:
    if backend == "rlimits" and (name in ISOLATION or (name in NAMESPACES and not HAS_UNSHARE)):
        pytest.skip("the fallback does not isolate this")
    problem = _double()
    program = problem.prompt + HOSTILE[name].format(**attack) + problem.canonical_solution
    timeout = 3.0
    start = time.monotonic()
    (verdict,) = score_programs([problem], [program], timeout_s=timeout, backend=backend)
    elapsed = time.monotonic() - start
    assert not verdict.base_passed and verdict.status != "pass", verdict
    assert "secret" not in verdict.detail
    assert elapsed <= timeout + 0.5
    assert_nothing_left(problem.entry_point)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["os_exit", "sys_exit", "fake_verdicts", "kill_parent", "kill_harness",
                                  "forged_eq", "forged_hash", "int_subclass", "setsid_child"])
def test_hostile_program_fails_mbpp(name: str, backend: str, attack: dict[str, Any]) -> None:
    if backend == "rlimits" and name in NAMESPACES and not HAS_UNSHARE:
        pytest.skip("the fallback does not isolate this")
    problem = _synthetic(entry=f"area_{os.getpid()}")
    body = HOSTILE[name].format(**attack) + "    return 3.14159 * r * r\n"
    (verdict,) = score_programs([problem], [f"def {problem.entry_point}(r):\n{body}"], timeout_s=3, backend=backend)
    assert not verdict.base_passed and not verdict.plus_passed and verdict.status != "pass", verdict
    assert_nothing_left(problem.entry_point)


FLOOD = "    import sys\n    for _ in range({mib}):\n        sys.stdout.write('x' * 2**20)\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_output_flood_is_discarded_and_forges_nothing(backend: str) -> None:
    """The program's stdout is /dev/null: printing is no attack on the verdict channel, so a flood
    followed by a wrong value fails, and a right value after a short flood passes. (Whether a 1 GiB
    flood followed by the right value passes or times out depends on the machine's speed.)"""
    mbpp, humaneval = _synthetic(entry=f"area_{os.getpid()}"), _double()
    wrong_area = f"def {mbpp.entry_point}(r):\n" + FLOOD.format(mib=1024) + "    return 3.0 * r * r\n"
    right_area = f"def {mbpp.entry_point}(r):\n" + FLOOD.format(mib=4) + "    return 3.14159 * r * r\n"
    wrong_double = humaneval.prompt + FLOOD.format(mib=1024) + "    return 3 * x\n"
    right_double = humaneval.prompt + FLOOD.format(mib=4) + humaneval.canonical_solution
    verdicts = score_programs([mbpp, mbpp, humaneval, humaneval], [wrong_area, right_area, wrong_double, right_double],
                              timeout_s=3, backend=backend)
    assert [v.status == "pass" for v in verdicts] == [False, True, False, True], verdicts
    assert not verdicts[0].base_passed and not verdicts[2].base_passed
    assert_nothing_left(mbpp.entry_point)
    assert_nothing_left(humaneval.entry_point)


def test_forged_values_fail_set_and_regex_oracles(mbpp: list[CodeProblem]) -> None:
    shared = _by_id(mbpp, "Mbpp/2")  # similar_elements: compared as sets
    forged = ("class T(tuple):\n    def __eq__(self, other):\n        return True\n    __hash__ = tuple.__hash__\n"
              "def similar_elements(a, b):\n    return T()\n")
    forged_items = ("class Any:\n    def __eq__(self, other):\n        return True\n    def __hash__(self):\n"
                    "        return 0\ndef similar_elements(a, b):\n    return (Any(),) * len(set(a) & set(b))\n")
    regex = _by_id(mbpp, "Mbpp/794")  # any non-None result counts as "matched": no method may run on it
    lying = ("class Match:\n    def __bool__(self):\n        return True\n    def __eq__(self, other):\n"
             "        return True\ndef text_starta_endb(text):\n    return Match()\n")
    verdicts = score_programs([shared, shared, regex], [forged, forged_items, lying])
    assert [v.base_passed for v in verdicts] == [False, False, False]
    assert "non-plain value (T)" in verdicts[0].detail


@pytest.mark.parametrize("backend", BACKENDS)
def test_plain_values_pass_exactly(backend: str) -> None:
    """Counter, OrderedDict and defaultdict read as dicts; bytearray as bytes; a tuple is not a list."""
    problem = CodeProblem("Synthetic/2", "", "f", "", "humaneval", test=(
        "def check(candidate):\n    assert candidate(0) == {'a': 2}\n    assert candidate(1) == {'a': 2}\n"
        "    assert candidate(2) == b'ab'\n    assert candidate(3) == (1, 2)\n"))
    good = ("import collections\ndef f(i):\n    return [collections.Counter('aa'), collections.defaultdict(int, a=2),"
            " bytearray(b'ab'), (1, 2)][i]\n")
    wrong = "def f(i):\n    return [{'a': 2}, {'a': 2}, b'ab', [1, 2]][i]\n"
    verdicts = score_programs([problem] * 2, [good, wrong], backend=backend)
    assert [v.status for v in verdicts] == ["pass", "fail"]


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


def test_decode_reads_only_plain_data() -> None:
    values = [None, True, 2**100, -(2**70), 1.5, -0.0, 1j, "é\ud800", b"\x00", (1, [2.0]), {(1,): {"a"}},
              frozenset({1}), [2**10000]]
    for value in values:
        assert decode(encode(value)) == value or value != value
    for bad in [marshal.dumps((lambda: 0).__code__, 2), b"[\x05\x00\x00\x00", b"N0", b"<\x02\x00\x00\x00[\x00\x00\x00\x00N",
                b".", b"l\xff\xff\xff\x7f", marshal.dumps([[]] * 3, 4)]:
        with pytest.raises(ValueError):
            decode(bad)
    nested = b"[\x01\x00\x00\x00" * 200 + b"N"
    with pytest.raises(ValueError, match="deeply"):
        decode(nested)
    collisions = b"<" + struct.pack("<i", 4000) + b"".join(b"l" + struct.pack("<i", 5) + struct.pack("<5H", 0, 0, 0, 0, i % 2**15)
                                                           for i in range(4000))
    with pytest.raises(ValueError, match="too slow"):
        decode(collisions, deadline=time.monotonic() - 1)


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
