"""Provenance every record carries: package versions, git SHA, platform, timestamps."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import time
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


# A remembered hash is trusted only while the file keeps its size, mtime and inode, and only once its
# mtime is this much older than the hashing: a same-size edit within the filesystem's timestamp
# granularity (1-2 s on some) would otherwise keep its old mtime and go unnoticed (git's "racy" rule).
RACY_NS = 2_000_000_000
_HASHED: dict[str, tuple[tuple[int, int, int], str]] = {}


def sha256_file_cached(path: Path) -> str:
    """sha256 of a file, hashed once per process while the file stays unchanged (see ``RACY_NS``)."""
    st = os.stat(path)
    key, signature = os.path.abspath(path), (st.st_size, st.st_mtime_ns, st.st_ino)
    known = _HASHED.get(key)
    if known is not None and known[0] == signature:
        return known[1]
    started = time.time_ns()
    digest = sha256_file(path)
    if st.st_mtime_ns < started - RACY_NS:
        _HASHED[key] = (signature, digest)
    return digest


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
    """Whether tracked files differ from HEAD (None when git is unavailable or this is no checkout)."""
    if not (repo / ".git").exists():  # an installed wheel: do not report on a repo that merely encloses it
        return None
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.strip())


def environment() -> dict[str, object]:
    return {"python": platform.python_version(), "platform": platform.platform(), "git_sha": git_sha(),
            "git_dirty": git_dirty(), "packages": package_versions(), "hardware": hardware()}


def hardware() -> dict[str, object]:
    """What the numbers were measured on: CPU model and cores, and the GPU if torch sees one."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, object] = {"cpu": cpu, "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                               else os.cpu_count(), "gpu": None}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
