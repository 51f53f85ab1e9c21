"""Run an untrusted Python program in a separate, limited process.

Layers, outermost first:

* a new session, so one ``killpg`` ends the program and everything it started;
* rlimits (address space, CPU seconds, file size, open files, processes, no core dumps) set by
  ``prlimit``;
* bubblewrap when it works: read-only ``/``, a private size-capped tmpfs at ``/tmp`` (the working
  dir), fresh ``/dev`` and ``/proc``, every namespace unshared (so no network, and a pid namespace
  whose init ignores the program's signals and takes all its processes down with it), and a seccomp
  filter that refuses to create processes (threads stay allowed), which stops fork bombs even as root;
* without bubblewrap, a ``/bin/sh`` in between (so ``os.getppid()`` is not the caller) and a private
  temporary working directory; a one-time warning says the stronger layer is missing.

Output is read with a cap; a program that prints more is killed (status ``output_limit``) rather than
buffered, and the wall-clock deadline holds whatever the program does.
"""

from __future__ import annotations

import errno
import os
import platform
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO, Literal

from latentbench.errors import LatentbenchError

Status = Literal["ok", "error", "timeout", "killed", "output_limit"]
Backend = Literal["auto", "bwrap", "rlimits"]

BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
# Native math libraries start one thread per core; one is enough and keeps the address space small.
_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_SANDBOX_TMP = "/tmp"  # the program's working dir inside bubblewrap


class SandboxUnavailableError(LatentbenchError, RuntimeError):
    """The bubblewrap backend was asked for by name but does not work on this machine."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0  # wall clock, from start to kill
    memory_mb: int = 4096  # RLIMIT_AS of every process
    output_bytes: int = 64 * 1024  # per stream; more is an ``output_limit`` kill
    file_mb: int = 64  # RLIMIT_FSIZE: the largest file the program may write
    tmpfs_mb: int = 256  # size of the private /tmp under bubblewrap
    allow_subprocess: bool = False  # bubblewrap only: seccomp refuses fork/vfork/clone otherwise


@dataclass(frozen=True)
class RunResult:
    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    backend: str = "rlimits"


def run_python(source: str, *, files: Mapping[str, bytes] | None = None, stdin: bytes = b"",
               args: Sequence[str] = (), env: Mapping[str, str] | None = None,
               limits: Limits = Limits(), backend: Backend = "auto") -> RunResult:
    """Run ``source`` as ``__main__`` with this interpreter, in a sandbox.

    ``files`` go under ``in/`` next to the program (``in/main.py``; read-only under bubblewrap); the
    working directory is private and deleted afterwards. ``env`` adds to a scrubbed environment (PATH,
    LANG, HOME, PYTHONPATH = this interpreter's site-packages); nothing is inherited from the caller.
    """
    chosen = resolve_backend(backend)
    host_dir = Path(tempfile.mkdtemp(prefix="latentbench-sbx-"))
    try:
        in_dir = host_dir / "in"
        in_dir.mkdir()
        for name, data in {**(files or {}), "main.py": source.encode()}.items():
            (in_dir / name).write_bytes(data)
        (in_dir / ".stdin").write_bytes(stdin)
        # -S: no site hooks (an editable install's finder alone costs ~60 ms per start); the
        # interpreter's site-packages stay importable through PYTHONPATH
        python = [sys.executable, "-S", "-B", "in/main.py", *args]
        workdir = _SANDBOX_TMP if chosen == "bwrap" else str(host_dir)
        full_env = {**BASE_ENV, **_THREAD_ENV, "HOME": workdir, "TMPDIR": workdir, "PYTHONPATH": _site_path(),
                    **(env or {})}
        return _run(chosen, python, host_dir, full_env, limits)
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)


@cache
def _site_path() -> str:
    paths = sysconfig.get_paths()
    return os.pathsep.join(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def resolve_backend(backend: Backend = "auto") -> Literal["bwrap", "rlimits"]:
    """``auto`` picks bubblewrap when it works (probed once), else rlimits with a one-time warning."""
    if backend == "rlimits":
        return "rlimits"
    if bwrap_works():
        return "bwrap"
    if backend == "bwrap":
        raise SandboxUnavailableError("bubblewrap (bwrap) is not installed or cannot create namespaces here")
    _warn_fallback()
    return "rlimits"


@cache
def bwrap_works() -> bool:
    """Run one trivial program under the full bubblewrap command line; cache the answer."""
    if shutil.which("bwrap") is None:
        return False
    with tempfile.TemporaryDirectory(prefix="latentbench-probe-") as tmp:
        (Path(tmp) / "in").mkdir()
        cmd = [sys.executable, "-c", "print('sandbox-ok')"]
        try:
            with _seccomp_file(Path(tmp)) as seccomp:
                argv = _bwrap_argv(cmd, Path(tmp), Limits(), seccomp)
                fds = (seccomp.fileno(),) if seccomp else ()
                done = subprocess.run(argv, capture_output=True, timeout=30, env=dict(BASE_ENV), pass_fds=fds,
                                      stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return False
    return done.returncode == 0 and done.stdout.strip() == b"sandbox-ok"


@cache
def _warn_fallback() -> None:
    warnings.warn("latentbench sandbox: bubblewrap unavailable, running code with rlimits only "
                  "(no filesystem or network isolation); install the 'bubblewrap' package", stacklevel=3)


def _run(backend: str, python: list[str], host_dir: Path, env: dict[str, str], limits: Limits) -> RunResult:
    with _seccomp_file(host_dir) if backend == "bwrap" and not limits.allow_subprocess else nullcontext() as seccomp:
        if backend == "bwrap":
            argv = _bwrap_argv(python, host_dir, limits, seccomp)
        else:  # sh stays the parent, so the program cannot kill its caller with os.getppid()
            argv = ["/bin/sh", "-c", '"$@"; exit $?', "sh", *python]
        fds = (seccomp.fileno(),) if seccomp else ()
        start = time.monotonic()
        try:
            proc = _spawn(_rlimit_prefix(limits) + argv, host_dir, env, fds)
        except OSError as err:
            return RunResult("error", None, "", f"sandbox: could not start: {err}", 0.0, backend)
        return _collect(proc, limits, start, backend)


def _spawn(argv: list[str], host_dir: Path, env: dict[str, str], fds: tuple[int, ...]) -> subprocess.Popen:
    """Popen in a new session; retry briefly when the machine is out of processes (EAGAIN)."""
    for attempt in range(5):
        try:
            with open(host_dir / "in" / ".stdin", "rb") as stdin:
                return subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        cwd=host_dir, env=env, start_new_session=True, pass_fds=fds)
        except BlockingIOError:
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _collect(proc: subprocess.Popen, limits: Limits, start: float, backend: str) -> RunResult:
    """Read both pipes until EOF, the deadline, or the output cap; then make sure the group is gone."""
    assert proc.stdout is not None and proc.stderr is not None
    names = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    chunks = {name: bytearray() for name in names.values()}
    deadline = start + limits.timeout_s
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
    _kill_group(proc)
    returncode = proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    out, err = (bytes(chunks[name][: limits.output_bytes]).decode("utf-8", "replace")
                for name in ("stdout", "stderr"))
    status = _status(returncode, overflow, timed_out)
    return RunResult(status, returncode, out, err, time.monotonic() - start, backend)


def _status(returncode: int, overflow: bool, timed_out: bool) -> Status:
    if overflow:
        return "output_limit"
    if timed_out:
        return "timeout"
    if returncode == 0:
        return "ok"
    # bwrap and sh report a child killed by signal N as 128 + N
    return "killed" if returncode < 0 or returncode > 128 else "error"


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _bwrap_argv(cmd: list[str], host_dir: Path, limits: Limits, seccomp: BinaryIO | None) -> list[str]:
    argv = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--size", str(limits.tmpfs_mb * 2**20), "--tmpfs", _SANDBOX_TMP,
            "--ro-bind", str(host_dir / "in"), f"{_SANDBOX_TMP}/in",
            *_rebind_hidden_interpreter(),
            "--unshare-all", "--die-with-parent", "--new-session", "--chdir", _SANDBOX_TMP]
    if seccomp is not None:
        argv += ["--seccomp", str(seccomp.fileno())]
    return [*argv, *cmd]


@cache
def _rebind_hidden_interpreter() -> tuple[str, ...]:
    """The private tmpfs hides whatever lives under /tmp on the host: when the interpreter, its venv or
    site-packages do (a checkout in /tmp), bind them back read-only at the same paths."""
    dirs = {Path(p).absolute() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *_site_path().split(os.pathsep))}
    hidden = [d for d in dirs if d.is_relative_to(_SANDBOX_TMP) and d.exists()]
    outermost = sorted(str(d) for d in hidden if not any(d != o and d.is_relative_to(o) for o in hidden))
    return tuple(arg for d in outermost for arg in ("--ro-bind", d, d))


def _rlimit_prefix(limits: Limits) -> list[str]:
    """Limits go on through ``prlimit``'s exec, so no Python runs between fork and exec (thread-safe)."""
    cpu = int(limits.timeout_s) + 2  # CPU seconds: a backstop, the wall clock normally fires first
    values = {"as": limits.memory_mb * 2**20, "cpu": f"{cpu}:{cpu + 1}", "fsize": limits.file_mb * 2**20,
              "nofile": 256, "core": 0, "nproc": _user_tasks() + 64}
    prlimit = shutil.which("prlimit") or "/usr/bin/prlimit"
    return [prlimit, *(f"--{name}={value}" for name, value in values.items()), "--"]


def _user_tasks() -> int:
    """Threads this uid already runs: RLIMIT_NPROC counts them all, not just the sandbox's."""
    uid, total = os.getuid(), 0
    if uid == 0:  # the kernel does not apply RLIMIT_NPROC to root; seccomp covers that case
        return 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    total += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return total


# --- seccomp: refuse new processes, allow threads ------------------------------------------------

_ARCHES = {  # audit arch, syscall numbers
    "x86_64": (0xC000003E, {"fork": 57, "vfork": 58, "clone": 56, "clone3": 435}),
    "aarch64": (0xC00000B7, {"clone": 220, "clone3": 435}),
}
_CLONE_THREAD = 0x00010000
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000


def seccomp_program(machine: str | None = None) -> bytes | None:
    """A classic-BPF filter: fork/vfork/clone without CLONE_THREAD get EAGAIN; clone3 (whose flags a
    filter cannot read) gets ENOSYS so libc falls back to clone; other ABIs on the same CPU get ENOSYS."""
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, nrs = arch
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    prog: list[tuple[int, str | int, str | int, int]] = [
        (ld, 0, 0, 4), (jeq, 0, "nosys", audit_arch), (ld, 0, 0, 0)]
    if "fork" in nrs:  # x86_64: the x32 ABI shares the audit arch; its numbers carry bit 30
        prog.append((jge, "nosys", 0, 0x40000000))
    prog += [(jeq, "again", 0, nrs[name]) for name in ("fork", "vfork") if name in nrs]
    prog += [(jeq, "nosys", 0, nrs["clone3"]), (jeq, 0, "allow", nrs["clone"]),
             (ld, 0, 0, 16), (jset, "allow", "again", _CLONE_THREAD)]
    labels = {"allow": len(prog), "again": len(prog) + 1, "nosys": len(prog) + 2}
    prog += [(ret, 0, 0, _RET_ALLOW), (ret, 0, 0, _RET_ERRNO | errno.EAGAIN),
             (ret, 0, 0, _RET_ERRNO | errno.ENOSYS)]
    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(prog):
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        out += struct.pack("=HBBI", code, jt, jf, k)
    return bytes(out)


def _seccomp_file(host_dir: Path) -> AbstractContextManager[BinaryIO | None]:
    """The filter as an open file whose descriptor bwrap reads (``--seccomp FD``)."""
    program = seccomp_program()
    if program is None:
        return nullcontext()
    path = host_dir / ".seccomp.bpf"
    path.write_bytes(program)
    return open(path, "rb")
