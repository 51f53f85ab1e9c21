"""Where latentbench finds its files: the repo's task cards and schemas, the cache, the data dir."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TASKS_DIR = REPO_ROOT / "tasks"
SCHEMAS_DIR = REPO_ROOT / "schemas"


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
