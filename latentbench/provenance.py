"""Provenance every record carries: package versions, git SHA, platform, timestamps."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from latentbench.paths import REPO_ROOT

PACKAGES = ("latentbench", "torch", "transformers", "accelerate", "datasets", "huggingface_hub", "polars",
            "pyarrow", "zarr", "numcodecs", "numpy", "gguf", "safetensors", "evaluate", "typer")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape results (absent ones left out), plus Python."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def git_sha(repo: Path = REPO_ROOT) -> str | None:
    """HEAD commit of the latentbench checkout, read from .git without running git; None if absent."""
    git = repo / ".git"
    try:
        if git.is_file():  # worktree: "gitdir: <path>"
            git = (repo / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(":", 1)[1].strip()
        common = Path((git / "commondir").read_text().strip()) if (git / "commondir").is_file() else None
        for base in [git] + ([(git / common).resolve()] if common else []):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
            packed = base / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
    except OSError:
        return None
    return None


def git_dirty(repo: Path = REPO_ROOT) -> bool | None:
    """Whether tracked files differ from HEAD (None when git is unavailable)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.strip())


def environment() -> dict[str, object]:
    return {"python": platform.python_version(), "platform": platform.platform(), "git_sha": git_sha(),
            "git_dirty": git_dirty(), "packages": package_versions()}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
