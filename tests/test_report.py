"""Reports over results records: leaderboard pages and plots, and reproduce."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import saved_tiny_model
from typer.testing import CliRunner

from latentbench.cli.main import app
from latentbench.eval.evaluator import EvalRequest, evaluate
from latentbench.eval.leaderboard import render
from latentbench.eval.reproduce import reproduce
from latentbench.paths import REPO_ROOT

BOARD = REPO_ROOT / "leaderboards"


def test_leaderboard_regenerates_the_committed_pages_byte_identically(tmp_path: Path) -> None:
    results = sorted((BOARD / "results").glob("*.json"))
    assert results, "no committed results records"
    out = tmp_path / "leaderboards"
    (out / "results").mkdir(parents=True)
    for path in results:  # the pages link to results/ beside them
        (out / "results" / path.name).write_bytes(path.read_bytes())
    written = render(sorted((out / "results").glob("*.json")), out)
    assert {p.suffix for p in written} == {".md", ".png"}
    for path in written:
        committed = BOARD / path.name
        assert committed.is_file(), f"{committed} is not committed (run `latentbench leaderboard`)"
        assert path.read_bytes() == committed.read_bytes(), f"{committed} differs from a fresh render"


def _record(tmp_path: Path, name: str, **changes: object) -> Path:
    """A committed GSM8K record with fields changed (dotted keys: 'task.n')."""
    base = json.loads(next((BOARD / "results").glob("gsm8k-test-latent-mas-*.json")).read_text())
    for key, value in changes.items():
        target = base
        *parents, last = key.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(base))
    return path


def test_question_sets_are_ranked_apart_and_controls_sit_under_their_row(tmp_path: Path) -> None:
    config = json.loads(next((BOARD / "results").glob("gsm8k-test-latent-mas-*.json")).read_text())["method"]["config"]
    paths = [
        _record(tmp_path, "a", **{"metrics.accuracy_flexible": 0.5}),
        _record(tmp_path, "noise", **{"metrics.accuracy_flexible": 0.25, "method.config": {**config, "control": "noise"}}),
        _record(tmp_path, "small", **{"task.n": 10, "limit": 10, "metrics.accuracy_flexible": 0.9}),
    ]
    render(paths, tmp_path / "out")
    page = (tmp_path / "out" / "gsm8k.md").read_text()
    sixty, ten = page.index("first 60 questions"), page.index("first 10 questions")
    assert sixty < ten  # the larger question set first; the 0.9 row is not ranked above the 0.5 one
    assert page.index("| latent-mas ", sixty) < page.index("| latent-mas ", ten)
    assert "control=noise: 0.250" in page and "control=none: not run" in page
    assert re.search(r"\| latent-mas[^|]* control=noise \|", page)  # the control row is labelled as one


@pytest.fixture(scope="module")
def tiny_dir() -> Path:
    return saved_tiny_model("qwen3", seed=0)


def test_reproduce_passes_on_its_own_record_and_fails_on_an_altered_prediction(tiny_dir: Path, tmp_path: Path) -> None:
    req = EvalRequest(task="gsm8k", limit=3, model=str(tiny_dir), output_path=str(tmp_path / "run"),
                      method_args={"max_new_tokens": 4}, show_progress=False)
    record, path = evaluate(req)
    assert reproduce(path, output_path=str(tmp_path / "again"), show_progress=False).ok
    samples = path.parent / record["samples_file"]
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    rows[1]["extracted"] = {k: "123456" for k in rows[1]["extracted"]}
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(app, ["reproduce", str(path), "--output-path", str(tmp_path / "third")])
    assert result.exit_code == 1, result.output
    assert f"DIFF {rows[1]['id']}" in result.output and "reproduced 2/3" in result.output


def test_reproduce_refuses_a_record_without_its_samples_file(tmp_path: Path) -> None:
    path = _record(tmp_path, "lonely")
    done = subprocess.run([sys.executable, "-m", "latentbench", "reproduce", str(path)], capture_output=True, text=True)
    assert done.returncode == 2 and "its samples file" in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.real_model
def test_a_committed_gsm8k_record_reproduces_on_its_first_five_questions(tmp_path: Path) -> None:
    """The compact latent-mas record (short answers, so this stays quick on the embedded default)."""
    record = next(p for p in (BOARD / "results").glob("gsm8k-test-latent-mas-*.json")
                  if json.loads(p.read_text())["method"]["config"].get("protocol") == "compact")
    result = reproduce(record, limit=5, output_path=str(tmp_path), show_progress=False)
    assert result.questions == 5 and result.ok, result.render()
