"""Where latentbench finds its files: the task cards and schemas, the cache, the data dir, output dirs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from latentbench.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[1]
# A built wheel carries copies of the top-level tasks/ and schemas/ here (setup.py); a checkout or an
# editable install has no _data/ and reads the top-level sources.
PACKAGED = Path(__file__).resolve().parent / "_data"


def _shipped(name: str) -> Path:
    return PACKAGED / name if (PACKAGED / name).is_dir() else REPO_ROOT / name


TASKS_DIR = _shipped("tasks")
SCHEMAS_DIR = _shipped("schemas")


def cache_dir(sub: str = "") -> Path:
    """Cache root: $LATENTBENCH_CACHE, else $XDG_CACHE_HOME/latentbench (never inside the package)."""
    root = os.environ.get("LATENTBENCH_CACHE") or (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "latentbench"
    )
    path = Path(root) / sub if sub else Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(override: str | os.PathLike | None = None) -> Path | None:
    """Offline benchmark data directory: --data-dir, else $LATENTBENCH_DATA_DIR, else None (use the Hub)."""
    value = override or os.environ.get("LATENTBENCH_DATA_DIR")
    return Path(value).expanduser() if value else None


def check_writable_dir(path: Path, flag: str = "") -> None:
    """UsageError (one line) unless ``path`` is a directory this process can write in, or can be made one.

    Called before any model loads, so a bad output path ends a command at once, not after the run.
    Probes with a real temporary file: permission bits say nothing for root or read-only mounts.
    """
    where = f"{flag} {path}" if flag else str(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        what = "is a file" if probe == path else f"{probe} is a file"
        raise UsageError(f"{where}: {what}, not a directory")
    try:  # an unnamed file on Linux (O_TMPFILE): nothing is left behind even if the process is killed
        with tempfile.TemporaryFile(dir=probe, prefix=".latentbench-write-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"{where}: cannot write in {probe} ({exc.strerror or type(exc).__name__})") from None
