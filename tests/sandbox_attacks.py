"""Shared by the sandbox tests: the backends to run under and the host secrets hostile programs aim at."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from latentbench.tasks import sandbox

HAS_BWRAP = sandbox.bwrap_works()
HAS_UNSHARE = bool(sandbox._unshare_prefix())
BACKENDS = [pytest.param("bwrap", marks=pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap unavailable")),
            "rlimits"]
# what the fallback isolates only with namespaces from unshare
NS_BACKENDS = [BACKENDS[0], pytest.param("rlimits", marks=pytest.mark.skipif(not HAS_UNSHARE, reason="no unshare"))]
bwrap_only = pytest.mark.skipif(not HAS_BWRAP, reason="needs bubblewrap (the fallback does not isolate this)")
HOME_SECRET = "home-secret-7f3a"


def processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


def assert_nothing_left(marker: str) -> None:
    """No process with ``marker`` in its command line is running (within the 0.5 s a namespace takes)."""
    deadline = time.monotonic() + 0.5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []


@contextmanager
def home_canary() -> Iterator[Path]:
    """A secret file in the real home directory (removed afterwards)."""
    path = Path.home() / f".latentbench-canary-{os.getpid()}"
    try:
        path.write_text(HOME_SECRET)
    except OSError:
        pytest.skip("home directory not writable")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


@contextmanager
def secret_process() -> Iterator[str]:
    """A process of ours whose environment holds a secret (readable in /proc/PID/environ on the host)."""
    secret = f"proc-secret-{os.getpid()}"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env={"LB_SECRET": secret})
    try:
        yield secret
    finally:
        proc.kill()
        proc.wait()
