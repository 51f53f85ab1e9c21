"""Push a dataset directory to a Hugging Face dataset repo as a tagged version, and pull one back.

The endpoint comes from ``HF_ENDPOINT``, offline mode from ``HF_HUB_OFFLINE`` and the Xet switch from
``HF_HUB_DISABLE_XET`` *at call time* (huggingface_hub reads them once, at import), so tests and users
can switch them per call.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentbench.errors import DataNotFoundError, DatasetIntegrityError, LatentbenchError, UsageError
from latentbench.paths import cache_dir
from latentbench.store.manifest import MANIFEST, SEMVER, read_manifest
from latentbench.store.validate import validate_dataset

DEFAULT_ENDPOINT = "https://huggingface.co"
_REPO_ID = r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*"
_HUB_SPEC = re.compile(rf"^(?P<repo>{_REPO_ID})(?:@(?P<rev>[\w.\-/]+))?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TRUE = {"1", "ON", "YES", "TRUE"}


class HubError(LatentbenchError, OSError):
    """The Hub (or the server at HF_ENDPOINT) refused a request or could not be reached."""


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    tag: str
    files: list[tuple[str, int]]  # (path in repo, bytes), manifest.json included
    dry_run: bool
    commit: str | None = None
    url: str | None = None


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def parse_hub_spec(spec: str) -> tuple[str, str | None] | None:
    """``owner/name[@revision]`` -> (repo_id, revision or None); None if it is not one."""
    m = _HUB_SPEC.match(spec)
    return (m["repo"], m["rev"]) if m else None


@contextlib.contextmanager
def _hub(action: str) -> Iterator[Any]:
    """An HfApi for the current endpoint; turns client errors into one-line HubErrors."""
    if offline():
        raise UsageError(f"cannot {action}: HF_HUB_OFFLINE is set (unset it to reach {endpoint()})")
    import huggingface_hub
    from huggingface_hub import constants

    # huggingface_hub froze HF_HUB_OFFLINE and HF_HUB_DISABLE_XET at import; follow the environment now.
    saved = constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_XET
    constants.HF_HUB_OFFLINE = False
    constants.HF_HUB_DISABLE_XET = os.environ.get("HF_HUB_DISABLE_XET", "").strip().upper() in _TRUE
    try:
        yield huggingface_hub.HfApi(endpoint=endpoint())
    except LatentbenchError:
        raise
    except huggingface_hub.errors.RevisionNotFoundError:
        raise HubError(f"cannot {action}: revision not found") from None
    except huggingface_hub.errors.RepositoryNotFoundError:
        raise HubError(f"cannot {action}: repository not found (or no access)") from None
    except Exception as exc:  # HTTP and connection errors of several libraries
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise HubError(f"cannot {action}: {reason}") from None
    finally:
        constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_XET = saved


def push(path: str | Path, repo_id: str, version: str, *, private: bool = False,
         dry_run: bool = False) -> PushResult:
    """Validate, upload the directory to dataset repo ``repo_id``, then tag the commit ``v<version>``.

    Refuses an invalid dataset, a version different from manifest.json's, an existing tag (a pushed
    version never changes) and ``private`` for an existing public repo (it would stay public), all
    before uploading anything. ``dry_run`` only validates and lists the files.
    """
    root = Path(path)
    if not re.fullmatch(_REPO_ID, repo_id):
        raise UsageError(f"repo id must look like 'owner/name', got {repo_id!r}")
    if not re.fullmatch(SEMVER, version):
        raise UsageError(f"--version must be semver X.Y.Z, got {version!r}")
    problems = validate_dataset(root)
    if problems:
        more = f" (+{len(problems) - 1} more; run `latentbench validate {root}`)" if len(problems) > 1 else ""
        raise DatasetIntegrityError(f"refusing to push an invalid dataset: {problems[0]}{more}")
    manifest = read_manifest(root)
    if manifest["version"] != version:
        raise UsageError(f"{root / MANIFEST}: dataset version is {manifest['version']} but --version is {version}; "
                         "the version is fixed when the dataset is written")
    tag = f"v{version}"
    files = [(rel, meta["bytes"]) for rel, meta in manifest["files"].items()]
    files.append((MANIFEST, (root / MANIFEST).stat().st_size))
    if dry_run:
        return PushResult(repo_id, tag, sorted(files), dry_run=True)
    with _hub(f"push {root} to {repo_id}") as api:
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            existing = api.repo_info(repo_id, repo_type="dataset")
        except RepositoryNotFoundError:
            existing = None
        if existing is None:
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        elif private and not existing.private:  # create_repo(exist_ok=True) would ignore it silently
            raise UsageError(f"{repo_id}: exists and is public, so --private would not apply; make it private "
                             "on the Hub first, or push without --private")
        refs = api.list_repo_refs(repo_id, repo_type="dataset")
        if any(t.name == tag for t in refs.tags):
            raise UsageError(f"{repo_id}: tag {tag} already exists and a pushed version never changes; "
                             "write the dataset with a new version")
        commit = api.upload_folder(
            repo_id=repo_id, repo_type="dataset", folder_path=str(root),
            commit_message=f"latentbench {manifest['kind']} dataset {tag}",
            delete_patterns=["tables/**", "arrays.zarr/**"],  # leftovers of an earlier version
        )
        api.create_tag(repo_id, repo_type="dataset", tag=tag, revision=commit.oid,
                       tag_message=f"{manifest['kind']} dataset {version}")
    return PushResult(repo_id, tag, sorted(files), dry_run=False, commit=commit.oid,
                      url=f"{endpoint()}/datasets/{repo_id}/tree/{tag}")


def pull(spec: str, to: str | Path) -> Path:
    """Download ``owner/name[@revision]`` into ``to`` (new or empty), validating before it appears there."""
    parsed = parse_hub_spec(spec)
    if parsed is None:
        raise UsageError(f"expected a Hub dataset id 'owner/name[@revision]', got {spec!r}")
    repo_id, revision = parsed
    dest = Path(to)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest}: already exists and is not empty; refusing to overwrite it")
    staging = dest.parent / f".{dest.name}.pull-tmp"
    shutil.rmtree(staging, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _hub(f"pull {spec}") as api:
            from huggingface_hub import snapshot_download

            snapshot_download(repo_id, repo_type="dataset", revision=revision, local_dir=staging,
                              endpoint=api.endpoint)
        shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's local_dir bookkeeping
        (staging / ".gitattributes").unlink(missing_ok=True)  # the Hub adds it to every repo
        problems = validate_dataset(staging)
        if problems:
            first = problems[0].replace(str(staging), spec)
            raise DatasetIntegrityError(f"pulled dataset is invalid: {first}"
                                        + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


@dataclass(frozen=True)
class HubCopy:
    """A Hub dataset in the local cache: where, and which commit it is."""

    path: Path
    repo_id: str
    ref: str  # the revision asked for ("main" when none was)
    commit: str  # the commit it resolved to, and whose files ``path`` holds


def cached_dataset(repo_id: str, revision: str | None) -> HubCopy:
    """Local copy of a Hub dataset for ``open_dataset``, one cache directory per commit.

    A branch or tag (``main`` when none is given) is resolved to its commit on every call, so an
    unpinned id follows the repo; a 40-hex commit is used as is. Offline, the commit it resolved to
    last is read (recorded in ``refs/``), if that is in the cache."""
    root = cache_dir("datasets") / repo_id.replace("/", "--")
    rev = revision or "main"
    ref_file = root / "refs" / rev.replace("/", "--")
    resolved = False
    if _COMMIT.match(rev):
        commit = rev
    elif offline():
        commit = ref_file.read_text().strip() if ref_file.is_file() else ""
    else:
        with _hub(f"resolve {repo_id}@{rev}") as api:
            commit, resolved = api.repo_info(repo_id, repo_type="dataset", revision=rev).sha, True
    if not commit or not (root / commit / MANIFEST).is_file():
        if offline():
            raise DataNotFoundError(f"{repo_id}@{rev}: not in the cache ({root}) and HF_HUB_OFFLINE is set")
        pull(f"{repo_id}@{commit}", root / commit)
    if resolved:  # after the pull, so offline reads only a ref whose files are complete
        ref_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = ref_file.with_name(f".{ref_file.name}.{os.getpid()}.tmp")
        tmp.write_text(commit + "\n")
        os.replace(tmp, ref_file)
    return HubCopy(root / commit, repo_id, rev, commit)
