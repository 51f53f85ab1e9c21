"""The package works installed from its wheel, not only as an editable checkout.

Builds the sdist from a copy of the sources, the wheel from that sdist (as ``python -m build`` does),
installs the wheel with ``--no-deps`` into a fresh venv outside the checkout, and runs ``latentbench
tasks`` and ``latentbench validate`` there from an unrelated working directory.

Dependencies (torch, polars, ...) are not installed again: after the wheel is in, a ``.pth`` file in the
new venv appends this environment's site-packages to its path. A ``.pth`` line only appends a
directory, so this environment's editable-install hook (itself a ``.pth`` in that directory) never
runs, and the new venv's own site-packages, holding the wheel, comes first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from latentbench.store.synthetic import make_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "tasks", "schemas", "latentbench"]


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def _build(hook: str, source: Path, out: Path) -> Path:
    """Run setuptools' PEP 517 hook in ``source`` (no build isolation: nothing is downloaded)."""
    name = _run([sys.executable, "-c", f"from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))"],
                cwd=source).strip().splitlines()[-1]
    return out / name


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "_data"))
        else:
            shutil.copy2(ROOT / name, src / name)

    sdist = _build("build_sdist", src, tmp_path / "dist")
    with tarfile.open(sdist) as tar:
        members = {Path(m).relative_to(Path(m).parts[0]).as_posix() for m in tar.getnames() if "/" in m}
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert {"tasks/gsm8k.yaml", "schemas/manifest.v1.schema.json", "setup.py"} <= members
    wheel = _build("build_wheel", tmp_path / "unpacked" / sdist.name.removesuffix(".tar.gz"), tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    cards = {n for n in names if n.startswith("latentbench/_data/tasks/")}
    schemas = {n for n in names if n.startswith("latentbench/_data/schemas/")}
    assert {Path(n).name for n in cards} == {p.name for p in (ROOT / "tasks").glob("*.yaml")}
    assert {Path(n).name for n in schemas} == {p.name for p in (ROOT / "schemas").glob("*.json")}
    assert not any(n.startswith(("tasks/", "schemas/", "tests/")) for n in names)  # no top-level clutter

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    # Installed before the .pth below exists, so pip sees only this venv and touches nothing else.
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
          str(wheel)], cwd=tmp_path)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path).strip())
    host = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "zz-host-env.pth").write_text("".join(f"{p}\n" for p in host))

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONNOUSERSITE": "1"}
    where = _run([str(python), "-c", "import latentbench, latentbench.paths as p; print(latentbench.__file__); "
                  "print(p.TASKS_DIR); print(p.SCHEMAS_DIR)"], cwd=work, env=env).split()
    assert all(line.startswith(str(site / "latentbench")) for line in where), where  # the wheel, not the checkout

    tasks = _run([str(venv / "bin" / "latentbench"), "tasks"], cwd=work, env=env)
    assert [line.split()[0] for line in tasks.splitlines()] == ["gpqa", "gsm8k", "humaneval", "mbppplus", "medqa"]
    dataset = tmp_path / "ds"
    make_synthetic_dataset(dataset, "latent-tree", n=2, extra_kinds=("kv-shard",))
    out = _run([str(venv / "bin" / "latentbench"), "validate", str(dataset)], cwd=work, env=env)
    assert out.startswith(f"ok: {dataset} (latent-tree v0.1.0, 2 examples,"), out
