"""The sandbox contains what untrusted code does, under bubblewrap and under the rlimits fallback."""

from __future__ import annotations

import os
import socket
import struct
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import sandbox_attacks as attacks
from sandbox_attacks import BACKENDS, NS_BACKENDS, assert_nothing_left, bwrap_only

from latentbench.tasks import sandbox
from latentbench.tasks.sandbox import Limits, SandboxUnavailableError, run_python

FAST = Limits(timeout_s=5.0)


@pytest.fixture
def home_canary() -> Iterator[Path]:
    with attacks.home_canary() as path:
        yield path


@pytest.fixture
def secret_process() -> Iterator[str]:
    with attacks.secret_process() as secret:
        yield secret


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


@bwrap_only
def test_nothing_of_the_host_is_visible(home_canary: Path, tmp_path: Path) -> None:
    host_tmp = tmp_path / "canary.txt"
    host_tmp.write_text("tmp-secret-91c2")
    source = ("import os, sys\nfound = []\nfor p in sys.argv[1:]:\n    try:\n        found.append(open(p).read())\n"
              "    except OSError as e:\n        found.append(e.errno)\n"
              "print(found)\nprint(sorted(os.listdir('/')))\nprint(sorted(os.listdir('/tmp')))\n"
              "print(sorted(p for p in os.listdir('/proc') if p.isdigit()))\n"
              "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])\nimport numpy\n")
    paths = [str(home_canary), str(host_tmp), "/etc/passwd", "/etc/hostname", os.path.expanduser("~/.bashrc")]
    result = run_python(source, args=paths, limits=FAST, backend="bwrap")
    found, root, tmp, pids, caps = result.stdout.splitlines()
    assert result.status == "ok", result.stderr
    assert eval(found) == [2] * len(paths)  # ENOENT, each of them
    assert not {"etc", "var", "sys", "boot", "run", "srv"} & set(eval(root))  # mount points of the binds only
    assert "in" in eval(tmp) and tmp_path.parts[2] not in eval(tmp) and len(eval(pids)) <= 2
    assert int(caps, 16) == 0
    assert attacks.HOME_SECRET not in result.stdout + result.stderr and host_tmp.read_text() == "tmp-secret-91c2"


@pytest.mark.parametrize("backend", NS_BACKENDS)
def test_other_processes_environ_is_unreadable(backend: str, secret_process: str) -> None:
    source = ("import os\nfor pid in os.listdir('/proc'):\n    try:\n"
              "        print(open(f'/proc/{pid}/environ', 'rb').read())\n    except OSError:\n        pass\n")
    result = run_python(source, limits=FAST, backend=backend)
    assert result.status == "ok" and secret_process not in result.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_exit_code_and_stdin(backend: str) -> None:
    result = run_python("import sys\nprint(sys.stdin.read().upper())\nsys.exit(3)", stdin=b"abc",
                        limits=FAST, backend=backend)
    assert (result.status, result.returncode, result.stdout) == ("error", 3, "ABC\n")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["infinite_loop", "fork_bomb"])
def test_deadline_holds_within_half_a_second(backend: str, name: str) -> None:
    marker = f"{name}-{os.getpid()}"
    body = "pass" if name == "infinite_loop" else "try:\n        os.fork()\n    except OSError:\n        pass"
    start = time.monotonic()
    result = run_python(f"import os\nwhile True:\n    {body}\n", args=[marker], limits=Limits(timeout_s=1.5),
                        backend=backend)
    assert result.status == "timeout"
    assert time.monotonic() - start <= 1.5 + 0.5
    assert_nothing_left(marker)


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
@pytest.mark.parametrize("call", ["os.kill(os.getppid(), 9)", "os.kill(os.getpid(), 0)",
                                  "ctypes.CDLL(None).ptrace(16, os.getppid(), 0, 0)",
                                  "ctypes.CDLL(None).kill(1, 9)"])
def test_signalling_or_tracing_any_process_ends_the_program(backend: str, call: str) -> None:
    result = run_python(f"import ctypes, os\nprint('before', flush=True)\n{call}\nprint('after')",
                        limits=FAST, backend=backend)
    assert result.status == "killed" and result.stdout == "before\n"


@pytest.mark.parametrize("backend", NS_BACKENDS)
def test_network_is_unreachable(backend: str) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        source = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
        result = run_python(source, limits=FAST, backend=backend)
        assert result.status == "error" and "connected" not in result.stdout
        with pytest.raises(TimeoutError):
            server.accept()


@bwrap_only
def test_writes_outside_the_sandbox_fail(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    # the home dir, not the checkout: a checkout under /tmp exists (private and writable) inside the sandbox's
    # tmpfs, because the interpreter's bind mount creates its path there
    repo_file = Path.home() / "sandbox-escape.txt"
    source = ("import sys\nfor p in sys.argv[1:]:\n    try:\n        open(p, 'w').write('x')\n"
              "        print('wrote', p)\n    except OSError as e:\n        print('blocked', p, e.errno)")
    result = run_python(source, args=[str(target), str(repo_file), "/usr/x", "/x", "/dev/x"], limits=FAST,
                        backend="bwrap")
    assert result.status == "ok"
    assert "wrote" not in result.stdout  # the host's dirs do not exist inside; / /usr /dev are read-only
    assert not target.exists() and not repo_file.exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_processes_refused_but_threads_work(backend: str) -> None:
    source = ("import os, threading\nt = threading.Thread(target=print, args=('thread ok',))\nt.start(); t.join()\n"
              "for spawn in (os.fork, lambda: os.posix_spawn('/bin/sh', ['sh', '-c', 'true'], {})):\n    try:\n"
              "        spawn()\n    except OSError as e:\n        print('refused', e.errno)")
    result = run_python(source, limits=FAST, backend=backend)
    assert result.stdout.splitlines() == ["thread ok", "refused 11", "refused 11"]


@pytest.mark.parametrize("backend", NS_BACKENDS)
def test_detached_children_die_with_the_sandbox(backend: str) -> None:
    marker = f"detached-{os.getpid()}"
    source = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nprint('parent done')"
    result = run_python(source, args=[marker], limits=Limits(timeout_s=5, allow_subprocess=True), backend=backend)
    assert result.stdout == "parent done\n"
    assert_nothing_left(marker)


def test_seccomp_program_is_well_formed() -> None:
    for machine in ("x86_64", "aarch64"):
        for allow in (False, True):
            program = sandbox.seccomp_program(machine, allow_processes=allow)
            assert program is not None and len(program) % 8 == 0
            # the first instruction loads the architecture word of seccomp_data
            assert struct.unpack("=HBBI", program[:8]) == (0x20, 0, 0, 4)
    assert sandbox.seccomp_program("riscv64") is None


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None if name == "bwrap" else "/usr/bin/" + name)
    sandbox.bwrap_works.cache_clear()
    sandbox._warn_fallback.cache_clear()
    yield
    sandbox.bwrap_works.cache_clear()
    sandbox._warn_fallback.cache_clear()


@pytest.mark.usefixtures("no_bwrap")
def test_missing_bwrap_refuses_unless_the_fallback_is_allowed() -> None:
    for backend in ("auto", "bwrap"):
        with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap"):
            sandbox.resolve_backend(backend)  # type: ignore[arg-type]
    with pytest.raises(SandboxUnavailableError):
        run_python("print(1)")
    assert sandbox.resolve_backend("rlimits") == "rlimits"  # asked for by name
    with sandbox.unsafe_fallback():
        with pytest.warns(UserWarning, match="bubblewrap unavailable"):
            assert sandbox.resolve_backend("auto") == "rlimits"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the second fallback is silent
            assert run_python("print(1)").backend == "rlimits"
    with pytest.raises(SandboxUnavailableError):
        sandbox.resolve_backend("auto")  # the opt-in ended with its block
