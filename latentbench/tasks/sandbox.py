"""Run an untrusted Python program in a separate, limited process.

Layers, outermost first (docs/sandbox.md has the why):

* a new session, so one ``killpg`` ends the program, and a wall-clock deadline that holds whatever the
  program does;
* rlimits set by ``prlimit``: address space, CPU seconds, file size, open files, no core dumps;
* **bwrap**: an empty root with only the interpreter, its standard library, the system libraries and
  the site-packages in ``sandbox_mounts.SANDBOX_PACKAGES`` bound read-only; a private size-capped ``/tmp`` (the
  working dir), a minimal read-only ``/dev``, a private ``/proc``; every namespace unshared (no
  network; a pid namespace that dies with the program), no capabilities, an environment reduced to
  a whitelist;
* or, only when asked for (``backend="rlimits"``, or ``auto`` under ``unsafe_fallback()``), the
  **rlimits** fallback: the same limits and filter, with pid, mount (a private ``/proc``) and network
  namespaces from ``unshare`` where it works, but no filesystem isolation;
* in both, a seccomp filter: creating a process fails (threads stay allowed; a fork bomb is a busy
  loop), and signalling or tracing any process (kill, tgkill, ptrace, process_vm_writev, pidfd...)
  ends the program on the spot.

Output is read with a cap; a program that prints more is killed (status ``output_limit``).
"""

from __future__ import annotations

import os
import select
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from latentbench.errors import LatentbenchError
from latentbench.tasks.sandbox_mounts import interpreter, package_roots, system_binds
from latentbench.tasks.seccomp import seccomp_program

Status = Literal["ok", "error", "timeout", "killed", "output_limit"]
Backend = Literal["auto", "bwrap", "rlimits"]

INSTALL_HINT = "apt-get install bubblewrap"
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
# Native math libraries start one thread per core; one is enough and keeps the address space small.
_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_SANDBOX_TMP = "/tmp"  # the program's working dir inside bubblewrap
_UNSAFE: ContextVar[bool] = ContextVar("latentbench_unsafe_no_sandbox", default=False)


class SandboxUnavailableError(LatentbenchError, RuntimeError):
    """Model-written code would run without bubblewrap and nobody asked for that."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0  # wall clock, from start to kill
    memory_mb: int = 4096  # RLIMIT_AS of every process
    output_bytes: int = 64 * 1024  # per stream; more is an ``output_limit`` kill
    file_mb: int = 64  # RLIMIT_FSIZE: the largest file the program may write
    tmpfs_mb: int = 256  # size of the private /tmp under bubblewrap
    allow_subprocess: bool = False  # let the program create processes (tests of the pid namespace)


@dataclass(frozen=True)
class RunResult:
    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    backend: str = "rlimits"


# --- choosing the backend ---------------------------------------------------------------------------

@contextmanager
def unsafe_fallback(allowed: bool = True) -> Iterator[None]:
    """Within this block, ``auto`` may fall back to rlimits when bubblewrap does not work
    (``latentbench eval --unsafe-no-sandbox``); outside it, that refuses instead."""
    token = _UNSAFE.set(allowed)
    try:
        yield
    finally:
        _UNSAFE.reset(token)


def resolve_backend(backend: Backend = "auto", *, unsafe: bool | None = None) -> Literal["bwrap", "rlimits"]:
    """bwrap when it works (probed once); ``rlimits`` when asked for by name, or for ``auto`` when the
    caller allows the fallback (``unsafe``, default: inside ``unsafe_fallback()``); else an error."""
    if backend == "rlimits":
        return "rlimits"
    if bwrap_works():
        return "bwrap"
    if backend == "auto" and (_UNSAFE.get() if unsafe is None else unsafe):
        _warn_fallback()
        return "rlimits"
    raise SandboxUnavailableError(
        f"bubblewrap (bwrap) is needed to run model-written code and does not work here: {INSTALL_HINT} "
        "(or pass --unsafe-no-sandbox to run it with resource limits only)")


@cache
def bwrap_works() -> bool:
    """Run one trivial program under the full bubblewrap command line; cache the answer."""
    if shutil.which("bwrap") is None:
        return False
    try:
        with Sandboxed("import hashlib\nprint('sandbox-ok')", limits=Limits(timeout_s=30), backend="bwrap",
                       _probing=True) as sb:
            result = sb.collect()
    except OSError:
        return False
    return result.status == "ok" and result.stdout.strip() == "sandbox-ok"


@cache
def _unshare_prefix() -> tuple[str, ...]:
    """``unshare`` flags that work here, or () when none do (probed once): pid, mount (for a private
    /proc) and network namespaces, inside a user namespace when one can be made, so that even root's
    capabilities hold only there."""
    unshare = shutil.which("unshare")
    for user in (("--user", "--map-root-user"), ()):
        argv = (unshare, *user, "--pid", "--fork", "--kill-child", "--mount-proc", "--net", "--") if unshare else ()
        try:
            if argv and subprocess.run([*argv, sys.executable, "-S", "-c", ""], capture_output=True,
                                       timeout=30).returncode == 0:
                return argv
        except (OSError, subprocess.SubprocessError):
            continue
    return ()


@cache
def _warn_fallback() -> None:
    warnings.warn("latentbench sandbox: bubblewrap unavailable, running model-written code with rlimits only "
                  f"(no filesystem isolation) as asked; to isolate it: {INSTALL_HINT}", stacklevel=3)


# --- running a program --------------------------------------------------------------------------------

def run_python(source: str, *, files: Mapping[str, bytes] | None = None, stdin: bytes = b"",
               args: Sequence[str] = (), env: Mapping[str, str] | None = None,
               limits: Limits = Limits(), backend: Backend = "auto") -> RunResult:
    """Run ``source`` as ``__main__`` in a sandbox and collect its (capped) output.

    ``files`` go under ``in/`` next to the program (``in/main.py``; read-only under bubblewrap); the
    working directory is private and deleted afterwards. ``env`` adds to a scrubbed environment (PATH,
    LANG, HOME, TMPDIR, PYTHONPATH, one-thread math libraries); nothing is inherited from the caller."""
    with Sandboxed(source, files=files, stdin=stdin, args=args, env=env, limits=limits, backend=backend) as sb:
        return sb.collect()


class Sandboxed:
    """One sandboxed program, running; ``with`` kills whatever is left of it and deletes its directory.

    ``interactive``: stdin and stdout are pipes for ``send``/``recv`` (stderr goes to a capped file);
    otherwise stdin is the ``stdin`` bytes and ``collect`` reads both outputs to the end."""

    def __init__(self, source: str, *, files: Mapping[str, bytes] | None = None, stdin: bytes = b"",
                 args: Sequence[str] = (), env: Mapping[str, str] | None = None, limits: Limits = Limits(),
                 backend: Backend = "auto", interactive: bool = False, _probing: bool = False) -> None:
        self.backend = "bwrap" if _probing else resolve_backend(backend)
        self.limits = limits
        self.dir = Path(tempfile.mkdtemp(prefix="latentbench-sbx-"))
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self._buf = bytearray()  # read ahead of ``recv``
        try:
            in_dir = self.dir / "in"
            in_dir.mkdir()
            for name, data in {**(files or {}), "main.py": source.encode()}.items():
                (in_dir / name).write_bytes(data)
            workdir = _SANDBOX_TMP if self.backend == "bwrap" else str(self.dir)
            full_env = {**BASE_ENV, **_THREAD_ENV, "HOME": workdir, "TMPDIR": workdir,
                        "PYTHONPATH": os.pathsep.join(package_roots()), **(env or {})}
            self.start = time.monotonic()
            self.proc = self._spawn(list(args), full_env, stdin, interactive)
        except BaseException:
            self.close()
            raise

    def _spawn(self, args: list[str], env: dict[str, str], stdin: bytes, interactive: bool) -> subprocess.Popen:
        filter_path = self.dir / ".seccomp.bpf"
        program = seccomp_program(allow_processes=self.limits.allow_subprocess)
        filter_path.write_bytes(program or b"")
        with open(filter_path, "rb") as seccomp:
            if self.backend == "bwrap":
                argv = _bwrap_argv(self.dir, self.limits, seccomp.fileno() if program else None)
                argv += [interpreter(), "-S", "-B", "in/main.py", *args]
            else:  # the bootstrap installs the filter before the program's first line
                argv = [*_unshare_prefix(), interpreter(), "-S", "-B", "-c", _BOOTSTRAP, filter_path.name,
                        "in/main.py", *args]
            if interactive:
                streams = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE,
                           "stderr": open(self.dir / ".stderr", "wb")}
            else:
                (self.dir / ".stdin").write_bytes(stdin)
                streams = {"stdin": open(self.dir / ".stdin", "rb"), "stdout": subprocess.PIPE,
                           "stderr": subprocess.PIPE}
            try:
                return _popen(_rlimit_prefix(self.limits) + argv, cwd=self.dir, env=env, pass_fds=(seccomp.fileno(),),
                              **streams)
            finally:
                for stream in streams.values():
                    if not isinstance(stream, int):
                        stream.close()

    # -- interactive use --

    def send(self, data: bytes, deadline: float) -> None:
        """Write all of ``data`` to the program's stdin; TimeoutError past ``deadline``, EOFError if it
        stopped reading."""
        assert self.proc is not None and self.proc.stdin is not None
        fd, view = self.proc.stdin.fileno(), memoryview(data)
        os.set_blocking(fd, False)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                _wait(fd, select.POLLOUT, deadline)
            except (BrokenPipeError, ConnectionResetError) as err:
                raise EOFError from err

    def recv(self, n: int, deadline: float) -> bytes:
        """Exactly ``n`` bytes of the program's stdout; TimeoutError past ``deadline``, EOFError at its end."""
        assert self.proc is not None and self.proc.stdout is not None
        fd, buf = self.proc.stdout.fileno(), self._buf
        os.set_blocking(fd, False)
        while len(buf) < n:
            try:
                chunk = os.read(fd, max(n - len(buf), 1 << 16))
            except BlockingIOError:
                _wait(fd, select.POLLIN, deadline)
                continue
            if not chunk:
                raise EOFError
            buf += chunk
        data = bytes(buf[:n])
        del buf[:n]
        return data

    def stderr_tail(self, n: int = 300) -> str:
        path = self.dir / ".stderr"
        return path.read_bytes()[-n:].decode("utf-8", "replace") if path.is_file() else ""

    # -- one-shot use --

    def collect(self) -> RunResult:
        """Read both pipes until EOF, the deadline or the output cap; then end the program."""
        proc, limits = self.proc, self.limits
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        names = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
        chunks = {name: bytearray() for name in names.values()}
        deadline = self.start + limits.timeout_s
        overflow = timed_out = False
        exited_at: float | None = None
        with selectors.DefaultSelector() as sel:
            for fd in names:
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_READ)
            while sel.get_map() and not overflow:
                now = time.monotonic()
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                if now >= deadline or (exited_at is not None and now - exited_at > 0.5):
                    # past the deadline, or a leftover child holds the pipes after the program ended
                    timed_out = exited_at is None
                    break
                for key, _ in sel.select(timeout=min(0.1, deadline - now)):
                    data = os.read(key.fd, 65536)
                    if not data:
                        sel.unregister(key.fd)
                    buf = chunks[names[key.fd]]
                    buf += data
                    overflow = overflow or len(buf) > limits.output_bytes
        returncode = self.kill()
        out, err = (bytes(chunks[name][: limits.output_bytes]).decode("utf-8", "replace")
                    for name in ("stdout", "stderr"))
        status = _status(returncode, overflow, timed_out)
        return RunResult(status, returncode, out, err, time.monotonic() - self.start, self.backend)

    # -- ending --

    def kill(self) -> int | None:
        """SIGKILL the program's process group (and with it its namespaces), once; its returncode."""
        if self.proc is None or self.returncode is not None:
            return self.returncode
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.returncode = self.proc.wait()
        # the namespace's processes die a moment after bwrap or unshare: wait (<= 0.5 s) until the
        # last one holding our pipe is gone, so that nothing of the program outlives this call
        if self.proc.stdout is not None:
            fd, deadline = self.proc.stdout.fileno(), time.monotonic() + 0.5
            os.set_blocking(fd, False)
            try:
                while True:
                    try:
                        if not os.read(fd, 1 << 16):
                            break
                    except BlockingIOError:
                        _wait(fd, select.POLLIN, deadline)
            except (TimeoutError, OSError):
                pass
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return self.returncode

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Sandboxed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wait(fd: int, event: int, deadline: float) -> None:
    """Until ``fd`` is ready for ``event``; TimeoutError at ``deadline``."""
    poller = select.poll()
    poller.register(fd, event)
    while not poller.poll(max(0, int((deadline - time.monotonic()) * 1000) + 1)):
        if time.monotonic() >= deadline:
            raise TimeoutError


def _popen(argv: list[str], **kwargs: object) -> subprocess.Popen:
    """Popen in a new session; retry briefly when the machine is out of processes (EAGAIN)."""
    for attempt in range(5):
        try:
            return subprocess.Popen(argv, start_new_session=True, **kwargs)  # type: ignore[call-overload]
        except BlockingIOError:
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _status(returncode: int | None, overflow: bool, timed_out: bool) -> Status:
    if overflow:
        return "output_limit"
    if timed_out:
        return "timeout"
    if returncode == 0:
        return "ok"
    # bwrap and unshare report a child killed by signal N as 128 + N
    return "killed" if returncode is None or returncode < 0 or returncode > 128 else "error"


# --- what the sandbox holds ------------------------------------------------------------------------

# The rlimits fallback installs the seccomp filter itself (bubblewrap does it with --seccomp).
_BOOTSTRAP = """\
import sys
if __import__('os').path.getsize(sys.argv[1]):
    import ctypes
    _p = open(sys.argv[1], 'rb').read()
    _b = ctypes.create_string_buffer(_p, len(_p))
    class _F(ctypes.Structure):
        _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]
    _c = ctypes.CDLL(None, use_errno=True)
    if _c.prctl(38, 1, 0, 0, 0) or _c.prctl(22, 2, ctypes.byref(_F(len(_p) // 8, ctypes.addressof(_b))), 0, 0):
        raise SystemExit('sandbox: cannot install the seccomp filter')
    del ctypes, _p, _b, _F, _c
del sys.argv[:2]
sys.path[0] = __import__('os').path.abspath('in')
__file__ = sys.argv[0]
exec(compile(open(__file__, 'rb').read(), __file__, 'exec'))
"""


def _bwrap_argv(host_dir: Path, limits: Limits, seccomp_fd: int | None) -> list[str]:
    # /tmp first: the binds after it show through even where the interpreter lives under the host's /tmp
    argv = ["bwrap", "--tmpfs", "/", "--size", str(limits.tmpfs_mb * 2**20), "--tmpfs", _SANDBOX_TMP,
            *system_binds(), "--ro-bind", str(host_dir / "in"), f"{_SANDBOX_TMP}/in", "--dev", "/dev", "--proc", "/proc",
            "--remount-ro", "/dev", "--remount-ro", "/",  # no unbounded tmpfs besides /tmp
            "--unshare-all", "--cap-drop", "ALL", "--hostname", "sandbox", "--die-with-parent", "--new-session",
            "--chdir", _SANDBOX_TMP]
    return argv + (["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else [])


def _rlimit_prefix(limits: Limits) -> list[str]:
    """Limits go on through ``prlimit``'s exec, so no Python runs between fork and exec (thread-safe)."""
    cpu = int(limits.timeout_s) + 2  # CPU seconds: a backstop, the wall clock normally fires first
    values: dict[str, object] = {"as": limits.memory_mb * 2**20, "cpu": f"{cpu}:{cpu + 1}",
                                 "fsize": limits.file_mb * 2**20, "nofile": 256, "core": 0}
    if limits.allow_subprocess:  # otherwise seccomp refuses new processes, root or not
        values["nproc"] = _user_tasks() + 64
    prlimit = shutil.which("prlimit") or "/usr/bin/prlimit"
    return [prlimit, *(f"--{name}={value}" for name, value in values.items()), "--"]


def _user_tasks() -> int:
    """Threads this uid already runs: RLIMIT_NPROC counts them all, not just the sandbox's."""
    uid, total = os.getuid(), 0
    if uid == 0:  # the kernel does not apply RLIMIT_NPROC to root
        return 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    total += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return total
