"""Output paths are checked before any work: a file, an unwritable directory or a non-dataset directory in
the way ends `eval`, `generate` and `train` with one line and exit 2, before a model (or data) loads."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_pinned_inputs import run_main

from latentbench.store.synthetic import make_synthetic_dataset


@pytest.fixture(autouse=True)
def nothing_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any model load (eval, generate) or training-data load (train) fails the test."""
    import latentbench.models
    import latentbench.train.loop

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(latentbench.models, "load_model", refuse)
    monkeypatch.setattr(latentbench.train.loop, "TrainData", refuse)


def _writable(path: Path) -> bool:
    try:
        fd, name = tempfile.mkstemp(dir=path)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A directory this process cannot create files in. Root ignores permission bits, so as root it is
    sysfs's top directory, where creating a file fails for everyone."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        found = next((d for d in (locked, Path("/sys")) if d.is_dir() and not _writable(d)), None)
        if found is None:
            pytest.skip("no directory here refuses writes (root, and /sys writable)")
        yield found
    finally:
        locked.chmod(0o755)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ds") / "tree"
    make_synthetic_dataset(path, "latent-tree", n=2)
    return path


def _file(tmp_path: Path) -> Path:
    target = tmp_path / "taken"
    target.write_text("someone's file")
    return target


def _foreign_dir(tmp_path: Path) -> Path:
    target = tmp_path / "notes"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    return target


CASES = {
    "a file": (_file, "{p}: is a file, not a directory"),
    "under a file": (lambda t: _file(t) / "sub", "{p}: {parent} is a file, not a directory"),
}


@pytest.mark.parametrize("case", CASES)
def test_eval_output_path_in_the_way(case: str, tmp_path: Path, monkeypatch, capsys) -> None:
    make, message = CASES[case]
    target = make(tmp_path)
    code, err = run_main(["eval", "gsm8k", "--limit", "1", "--output-path", str(target)], monkeypatch, capsys)
    assert code == 2 and err == "error: --output-path " + message.format(p=target, parent=target.parent) + "\n"


def test_eval_output_path_unwritable(unwritable: Path, monkeypatch, capsys) -> None:
    target = unwritable / "results"
    code, err = run_main(["eval", "gsm8k", "--limit", "1", "--output-path", str(target)], monkeypatch, capsys)
    assert code == 2 and err.startswith(f"error: --output-path {target}: cannot write in {unwritable} (")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("make", "message"), [
    (_file, "{p}: exists and is not a directory"),
    (_foreign_dir, "{p}: directory is not empty and holds no dataset in progress; refusing to write into it"),
    (lambda t: _file(t) / "sub", "{p}: {parent} is a file, not a directory"),
])
def test_generate_output_in_the_way(make, message: str, tmp_path: Path, monkeypatch, capsys) -> None:
    target = make(tmp_path)
    code, err = run_main(["generate", "gsm8k", "--limit", "1", "--output", str(target)], monkeypatch, capsys)
    assert code == 2 and err == "error: --output " + message.format(p=target, parent=target.parent) + "\n"


def test_generate_output_unwritable(unwritable: Path, monkeypatch, capsys) -> None:
    target = unwritable / "ds"
    code, err = run_main(["generate", "gsm8k", "--limit", "1", "--output", str(target)], monkeypatch, capsys)
    assert code == 2 and err.startswith(f"error: --output {target}: cannot write in {unwritable} (")


def test_train_output_in_the_way(dataset: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    target = _file(tmp_path)
    code, err = run_main(["train", "prm", str(dataset), "--output", str(target)], monkeypatch, capsys)
    assert code == 2 and err == f"error: {target}: exists and is not a directory (expected a training output directory)\n"
    target = target / "sub"
    code, err = run_main(["train", "prm", str(dataset), "--output", str(target)], monkeypatch, capsys)
    assert code == 2 and err == f"error: --output {target}: {target.parent} is a file, not a directory\n"


def test_train_output_unwritable(dataset: Path, unwritable: Path, monkeypatch, capsys) -> None:
    target = unwritable / "ckpt"
    code, err = run_main(["train", "prm", str(dataset), "--output", str(target)], monkeypatch, capsys)
    assert code == 2 and err.startswith(f"error: --output {target}: cannot write in {unwritable} (")
