"""Provenance every record carries: package versions, git SHA, platform, timestamps."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata

from latentbench.paths import REPO_ROOT

PACKAGES = ("latentbench", "torch", "transformers", "accelerate", "datasets", "huggingface_hub", "polars",
            "pyarrow", "zarr", "numcodecs", "numpy", "gguf", "safetensors", "evaluate", "typer")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_sha() -> str | None:
    """The checkout's HEAD (with "-dirty" when it has uncommitted changes), None outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def environment() -> dict[str, object]:
    return {"python": sys.version.split()[0], "platform": platform.platform(), "git_sha": git_sha(),
            "packages": package_versions()}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
