"""Bad input at the command line: one line naming what and where, exit code 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "latentbench"]


def run_cli(*args: str, env_extra: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def assert_user_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_unknown_task() -> None:
    assert_user_error(run_cli("eval", "gsm9k", "--limit", "1"), "unknown task 'gsm9k'", "gsm8k")


def test_data_missing_offline(tmp_path: Path) -> None:
    assert_user_error(run_cli("eval", "medqa", "--limit", "1", "--data-dir", str(tmp_path)),
                      str(tmp_path / "medqa" / "phrases_no_exclude_test.jsonl"), "not found")


def test_corrupt_data_file(tmp_path: Path) -> None:
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text("{not json\n")
    assert_user_error(run_cli("eval", "gsm8k", "--limit", "1", "--data-dir", str(tmp_path)), "test.jsonl has sha256",
                      "--allow-modified-data")  # not the file its card pins: refused before it is parsed
    assert_user_error(run_cli("eval", "gsm8k", "--limit", "1", "--data-dir", str(tmp_path), "--allow-modified-data"),
                      "test.jsonl:1")


def test_bad_model_path(tmp_path: Path) -> None:
    assert_user_error(run_cli("eval", "gsm8k", "--limit", "1", "--model", str(tmp_path / "nope")),
                      "--model", "no such path")


@pytest.mark.parametrize(("args", "needle"), [
    (["--limit", "0"], "--limit"),
    (["--dtype", "float8"], "--dtype"),
    (["--method", "telepathy"], "--method 'telepathy'"),
    (["--method-arg", "batch_size"], "expected key=value"),
    (["--method-arg", "bogus=1"], "unknown option"),
    (["--split", "dev"], "--split 'dev'"),
])
def test_bad_flag_values(args: list[str], needle: str) -> None:
    assert_user_error(run_cli("eval", "gsm8k", *args), needle)


def test_tasks_and_env_commands() -> None:
    tasks = run_cli("tasks")
    assert tasks.returncode == 0
    assert [line.split()[0] for line in tasks.stdout.splitlines()] == ["gpqa", "gsm8k", "humaneval", "mbppplus", "medqa"]
    env = run_cli("env")
    assert env.returncode == 0
    info = json.loads(env.stdout)
    assert info["packages"]["torch"] and info["packages"]["transformers"]
