"""No unsandboxed run by accident: without bubblewrap, scoring code refuses unless --unsafe-no-sandbox."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from latentbench.cli.main import main
from latentbench.eval.evaluator import EvalRequest, evaluate
from latentbench.methods.base import Outcome
from latentbench.models import tiny_model
from latentbench.tasks import sandbox
from latentbench.tasks.sandbox import SandboxUnavailableError


@pytest.fixture
def no_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Neither bwrap nor unshare is on PATH (the probes run again, and again afterwards)."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    probes = (sandbox.bwrap_works, sandbox._unshare_prefix, sandbox._warn_fallback)
    for probe in probes:
        probe.cache_clear()
    yield
    monkeypatch.undo()
    for probe in probes:
        probe.cache_clear()


@dataclass
class GoldConfig:
    pass


class Gold:
    """A method that answers each question with the task's gold output."""

    name = "gold"

    def __init__(self) -> None:
        self.config = GoldConfig()

    def run(self, lm, task, examples) -> Iterator[Outcome]:
        for ex in examples:
            yield Outcome(ex, task.prompt(ex), [task.gold_output(ex)], generated_tokens=1, forward_passes=1)


@pytest.mark.usefixtures("no_bwrap")
def test_eval_refuses_without_bwrap_with_the_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["latentbench", "eval", "humaneval", "--limit", "1", "--output-path",
                                      str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "apt-get install bubblewrap" in err and "--unsafe-no-sandbox" in err
    assert not (tmp_path / "out").exists()  # refused before any model ran or file was written


@pytest.mark.usefixtures("no_bwrap")
def test_opt_in_runs_with_rlimits_and_says_so(tmp_path: Path) -> None:
    lm = tiny_model("qwen3", seed=0)
    req = EvalRequest(task="humaneval", limit=2, output_path=str(tmp_path), show_progress=False)
    with pytest.raises(SandboxUnavailableError):
        evaluate(req, lm=lm, method=Gold())
    req.unsafe_no_sandbox = True
    with pytest.warns(UserWarning, match="bubblewrap unavailable"):
        record, _ = evaluate(req, lm=lm, method=Gold())
    assert record["sandbox"] == "rlimits" and record["metrics"]["pass@1_base"] == 1.0
