"""Progress (#15 item 7): a rich bar on a terminal (questions, running accuracy or loss, tokens/s), nothing
in a pipe or with --quiet; library deprecation warnings never reach the user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import saved_tiny_model

from latentbench import progress

CLI = [sys.executable, "-m", "latentbench"]
# rich reads these as "a terminal" or "not one" whatever the stream is: leave the decision to the stream
PLAIN_ENV = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")}


def on_terminal(args: list[str]) -> str:
    """Run the CLI with stdin, stdout and stderr on a pseudo-terminal; everything it wrote."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([*CLI, *args], stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            env={**PLAIN_ENV, "COLUMNS": "160", "TERM": "xterm-256color"})
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def eval_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["eval", "gsm8k", "--model", str(saved_tiny_model("qwen3")), "--limit", "3", "--max-new-tokens", "4",
            "--batch-size", "2", "--output-path", str(tmp_path), *extra]


def test_eval_shows_a_bar_on_a_terminal(tmp_path: Path) -> None:
    text = on_terminal(eval_args(tmp_path / "a"))
    assert "gsm8k cot" in text and "3/3" in text and "tok/s" in text and "acc 0.000 (0/3)" in text
    assert "results:" in text


def test_eval_is_quiet_in_a_pipe_and_with_quiet(tmp_path: Path) -> None:
    piped = subprocess.run([*CLI, *eval_args(tmp_path / "a")], capture_output=True, text=True, timeout=300,
                           env=PLAIN_ENV)
    assert piped.returncode == 0, piped.stderr
    for stream in (piped.stdout, piped.stderr):
        assert "tok/s" not in stream and "━" not in stream and "Loading weights" not in stream
    quiet = on_terminal(eval_args(tmp_path / "b", "--quiet"))
    assert "tok/s" not in quiet and "━" not in quiet and "results:" in quiet


def test_generate_shows_a_bar_on_a_terminal(tmp_path: Path) -> None:
    text = on_terminal(["generate", "gsm8k", "--model", str(saved_tiny_model("qwen3")), "--limit", "2",
                        "--max-new-tokens", "2", "--agents", "1", "--branches", "2", "--latent-steps", "1",
                        "--keep", "1", "-o", str(tmp_path / "d")])
    assert "gsm8k latent-tree" in text and "2/2" in text and "tok/s" in text and "dataset:" in text
    assert "acc 0.000 (0/2)" in text  # the answers the trees give (a random model's: wrong)


def test_train_bar_shows_the_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture) -> None:
    from test_train import TestValueProbeTrainer, probe

    from latentbench.train import run_training

    datasets = TestValueProbeTrainer().make_datasets(tmp_path / "probe")
    monkeypatch.setattr(progress, "interactive", lambda: True)  # as on a terminal
    run_training(probe(max_steps=3), datasets, tmp_path / "out")
    err = capsys.readouterr().err
    assert "train value-probe" in err and "3/3" in err and "loss " in err
    run_training(probe(max_steps=3), datasets, tmp_path / "quiet", show_progress=False)
    assert "loss" not in capsys.readouterr().err


def test_quiet_is_a_flag_of_eval_generate_and_train() -> None:
    from typer.testing import CliRunner

    from latentbench.cli.main import app

    for command in ("eval", "generate", "train"):
        result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
        assert "--quiet" in result.output, command


def test_bar_stats() -> None:
    bar = progress.Bar()
    bar.advance(tokens=10, correct=True)
    bar.advance(tokens=10, correct=False)
    assert bar.done == 2 and bar.stats().startswith("acc 0.500 (1/2)  ") and bar.stats().endswith(" tok/s")
    bar = progress.Bar()
    bar.advance(loss=0.25)
    assert bar.stats().startswith("loss 0.2500  ") and bar.stats().endswith(" it/s")


def test_quiet_turns_off_every_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "_quiet", False)
    progress.set_quiet(True)
    assert not progress.interactive()


LIBRARY_WARNINGS = """
import sys, warnings
from latentbench.cli.main import quiet_library_warnings
quiet_library_warnings()
for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning, UserWarning):
    warnings.warn_explicit(f"old api {category.__name__}", category, "transformers/x.py", 1, module="transformers.x")
"""


def test_library_deprecation_warnings_do_not_reach_the_user() -> None:
    shown = subprocess.run([sys.executable, "-c", LIBRARY_WARNINGS], capture_output=True, text=True, timeout=60)
    assert "Deprecation" not in shown.stderr and "FutureWarning" not in shown.stderr
    assert "old api UserWarning" in shown.stderr  # other warnings (e.g. the sandbox's) still show
    asked = subprocess.run([sys.executable, "-W", "default", "-c", LIBRARY_WARNINGS], capture_output=True, text=True,
                           timeout=60)
    assert "old api FutureWarning" in asked.stderr  # -W still wins
