"""The sandbox contains what untrusted code does, under bubblewrap and under the rlimits fallback."""

from __future__ import annotations

import os
import socket
import struct
import time
import warnings
from pathlib import Path

import pytest

from latentbench.tasks import sandbox
from latentbench.tasks.sandbox import Limits, SandboxUnavailableError, run_python

HAS_BWRAP = sandbox.bwrap_works()
BACKENDS = [pytest.param("bwrap", marks=pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap unavailable")),
            "rlimits"]
bwrap_only = pytest.mark.skipif(not HAS_BWRAP, reason="needs bubblewrap (the fallback does not isolate this)")
FAST = Limits(timeout_s=5.0)


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("backend", BACKENDS)
def test_runs_program_with_scrubbed_env(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATENTBENCH_TEST_SECRET", "hunter2")
    source = "import os, sys\nprint(sorted(os.environ))\nprint('err', file=sys.stderr)\nprint(os.getcwd())\n"
    result = run_python(source, env={"EXTRA": "1"}, limits=FAST, backend=backend)
    assert (result.status, result.returncode, result.backend) == ("ok", 0, backend)
    names = eval(result.stdout.splitlines()[0])  # a list literal we printed ourselves
    assert "LATENTBENCH_TEST_SECRET" not in names and "EXTRA" in names
    assert set(names) <= {"PATH", "LANG", "HOME", "TMPDIR", "EXTRA", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                          "MKL_NUM_THREADS", "LC_CTYPE", "PWD", "PYTHONPATH"}
    assert result.stderr == "err\n" and result.duration_s > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_work_dir_is_private_and_removed(backend: str) -> None:
    source = "import os\nopen('scratch.txt', 'w').write('x')\nprint(os.getcwd())\nprint(open('in/data.txt').read())"
    result = run_python(source, files={"data.txt": b"payload"}, limits=FAST, backend=backend)
    cwd, data = result.stdout.splitlines()
    assert result.status == "ok" and data == "payload"
    if backend == "bwrap":
        assert cwd == "/tmp"  # a private tmpfs; nothing lands on the host
    else:
        assert Path(cwd).name.startswith("latentbench-sbx-")
        assert not Path(cwd).exists()  # deleted after the run


@pytest.mark.parametrize("backend", BACKENDS)
def test_exit_code_and_stdin(backend: str) -> None:
    result = run_python("import sys\nprint(sys.stdin.read().upper())\nsys.exit(3)", stdin=b"abc",
                        limits=FAST, backend=backend)
    assert (result.status, result.returncode, result.stdout) == ("error", 3, "ABC\n")


@pytest.mark.parametrize("backend", BACKENDS)
def test_infinite_loop_times_out(backend: str) -> None:
    start = time.monotonic()
    result = run_python("while True:\n    pass\n", limits=Limits(timeout_s=1.5), backend=backend)
    assert result.status == "timeout"
    assert time.monotonic() - start < 6


@pytest.mark.parametrize("backend", BACKENDS)
def test_4gb_allocation_fails(backend: str) -> None:
    result = run_python("b = bytearray(4 * 2**30)\nb[-1] = 1\nprint('allocated')", limits=FAST, backend=backend)
    assert result.status in ("error", "killed")
    assert "allocated" not in result.stdout and "MemoryError" in result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_stdout_flood_is_capped(backend: str) -> None:
    source = "import sys\nchunk = 'x' * 2**20\nfor _ in range(1024):\n    sys.stdout.write(chunk)\nprint('done')"
    start = time.monotonic()
    result = run_python(source, limits=Limits(timeout_s=20, output_bytes=64 * 1024), backend=backend)
    assert result.status == "output_limit"
    assert len(result.stdout) == 64 * 1024 and "done" not in result.stdout
    assert time.monotonic() - start < 10  # killed at the cap, not after reading 1 GB


@pytest.mark.parametrize("backend", BACKENDS)
def test_killing_the_parent_does_not_reach_the_caller(backend: str) -> None:
    result = run_python("import os\nprint(os.getppid(), flush=True)\nos.kill(os.getppid(), 9)\nprint('after')",
                        limits=FAST, backend=backend)
    ppid = int(result.stdout.split()[0])
    assert ppid != os.getpid()  # an intermediate (sh, or bwrap's init) stands between us
    if backend == "bwrap":
        assert ppid == 1 and result.status == "ok"  # a pid namespace's init ignores the signal
    else:
        assert result.status == "killed"  # the shell died; we are still here


@bwrap_only
def test_writes_outside_the_sandbox_fail(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    repo_file = Path(__file__).resolve().parents[1] / "sandbox-escape.txt"
    source = ("import sys\nfor p in sys.argv[1:]:\n    try:\n        open(p, 'w').write('x')\n"
              "        print('wrote', p)\n    except OSError as e:\n        print('blocked', p, e.errno)")
    result = run_python(source, args=[str(target), str(repo_file)], limits=FAST, backend="bwrap")
    assert result.status == "ok"
    # host paths under /tmp land in the sandbox's private tmpfs (thrown away); all others are read-only
    for path in (target, repo_file):
        if not path.is_relative_to("/tmp"):
            assert f"blocked {path}" in result.stdout
    assert not target.exists() and not repo_file.exists()


@bwrap_only
def test_network_is_unreachable() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        source = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
        result = run_python(source, limits=FAST, backend="bwrap")
        assert result.status == "error" and "connected" not in result.stdout
        with pytest.raises(TimeoutError):
            server.accept()


@bwrap_only
def test_fork_refused_but_threads_work() -> None:
    source = ("import os, threading\nt = threading.Thread(target=print, args=('thread ok',))\nt.start(); t.join()\n"
              "try:\n    os.fork()\nexcept OSError as e:\n    print('fork refused', e.errno)")
    result = run_python(source, limits=FAST, backend="bwrap")
    assert result.stdout.splitlines() == ["thread ok", "fork refused 11"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_fork_bomb_is_contained(backend: str) -> None:
    if backend == "rlimits" and os.getuid() == 0:
        pytest.skip("as root the kernel does not enforce RLIMIT_NPROC, so the fallback cannot cap a fork bomb")
    marker = f"forkbomb-{os.getpid()}"
    source = f"# {marker}\nimport os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    start = time.monotonic()
    result = run_python(source, args=[marker], limits=Limits(timeout_s=2), backend=backend)
    assert result.status == "timeout" and time.monotonic() - start < 8
    time.sleep(0.3)
    assert _processes_with(marker) == []


@bwrap_only
def test_detached_children_die_with_the_sandbox() -> None:
    marker = f"detached-{os.getpid()}"
    source = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nprint('parent done')"
    result = run_python(source, args=[marker], limits=Limits(timeout_s=5, allow_subprocess=True), backend="bwrap")
    assert result.stdout == "parent done\n"
    time.sleep(0.3)
    assert _processes_with(marker) == []


def test_seccomp_program_is_well_formed() -> None:
    for machine in ("x86_64", "aarch64"):
        program = sandbox.seccomp_program(machine)
        assert program is not None and len(program) % 8 == 0
        # the first instruction loads the architecture word of seccomp_data
        assert struct.unpack("=HBBI", program[:8]) == (0x20, 0, 0, 4)
    assert sandbox.seccomp_program("riscv64") is None


def test_missing_bwrap_falls_back_once_or_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    sandbox.bwrap_works.cache_clear()
    sandbox._warn_fallback.cache_clear()
    try:
        with pytest.raises(SandboxUnavailableError):
            sandbox.resolve_backend("bwrap")
        with pytest.warns(UserWarning, match="bubblewrap unavailable"):
            assert sandbox.resolve_backend("auto") == "rlimits"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the second fallback is silent
            assert sandbox.resolve_backend("auto") == "rlimits"
    finally:
        sandbox.bwrap_works.cache_clear()
        sandbox._warn_fallback.cache_clear()
