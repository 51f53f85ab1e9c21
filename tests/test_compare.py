"""``latentbench compare``: paired accuracy, bootstrap interval and McNemar test on hand-made records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from latentbench.cli.main import app
from latentbench.errors import UsageError
from latentbench.eval.compare import compare, mcnemar_exact

# verdicts per question: (A flexible, B flexible); strict is False for both everywhere
PAIRS = [(True, True), (True, True)] + [(True, False)] * 5 + [(False, False)] * 3  # b = 5, c = 0


def _write(directory: Path, stem: str, answers: dict[str, tuple[bool, bool] | bool], *, task: str = "gsm8k",
           split: str = "test", method: str = "cot", samples: bool = True) -> Path:
    """A results record and its samples file. ``answers[id]`` is the flexible verdict, or (strict,
    flexible); the output states the gold (7) when flexible is right, else 3. A second sample with
    the opposite verdict checks that only sample 0 counts."""
    rows = []
    for qid, verdict in answers.items():
        strict, flexible = verdict if isinstance(verdict, tuple) else (False, verdict)
        value = "7" if flexible else "3"
        for sample, right in ((0, flexible), (1, not flexible)):
            rows.append({"id": qid, "sample": sample, "output": f"so {value}", "gold": "7",
                         "extracted": {"strict": value if strict else None, "flexible": value},
                         "correct": {"strict": strict, "flexible": right}})
    record = {"schema_version": "results.v2",
              "task": {"name": task, "split": split, "n": len(answers), "answer_kind": "number"},
              "method": {"name": method, "config": {}}, "model": {"id": "tiny"},
              "samples_file": f"samples-{stem}.jsonl" if samples else None}
    (directory / f"samples-{stem}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = directory / f"{stem}.json"
    path.write_text(json.dumps(record))
    return path


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    ids = [f"gsm8k/test/{i}" for i in range(len(PAIRS))]
    a = _write(tmp_path, "a", {**dict(zip(ids, (x for x, _ in PAIRS), strict=True)), "gsm8k/test/only-a": True})
    b = _write(tmp_path, "b", {**dict(zip(ids, (y for _, y in PAIRS), strict=True)),
                               "gsm8k/test/only-b1": True, "gsm8k/test/only-b2": False}, method="latent-mas")
    return a, b


def test_accuracies_difference_and_mcnemar(pair: tuple[Path, Path]) -> None:
    r = compare(*pair)
    assert r.variant == "flexible"  # gsm8k's primary variant
    assert (r.n, r.only_a, r.only_b) == (10, 1, 2)
    assert r.accuracy_a == pytest.approx(0.7) and r.accuracy_b == pytest.approx(0.2)
    assert r.difference == pytest.approx(-0.5)
    assert (r.a_only_right, r.b_only_right) == (5, 0)
    assert r.p_value == pytest.approx(2 * 0.5**5)  # = 0.0625
    low, high = r.interval
    assert low < -0.5 < high and -1 <= low and high <= 0  # B never beats A on any question


def test_disagreement_list(pair: tuple[Path, Path]) -> None:
    r = compare(*pair)
    assert [(d.id, d.right, d.extracted_a, d.extracted_b, d.gold) for d in r.disagreements] == [
        (f"gsm8k/test/{i}", "A", "7", "3", "7") for i in range(2, 7)]
    text = r.render(limit=3)
    assert "A  accuracy 0.7000  cot (tiny)" in text and "B  accuracy 0.2000  latent-mas (tiny)" in text
    assert "B - A  -0.5000, 95% paired bootstrap interval" in text and "p = 0.0625" in text
    assert "gsm8k/test/2  A right  A: 7  B: 3  gold: 7" in text and "… 2 more" in text
    assert "gsm8k/test/5 " not in text


def test_all_pairs_agree_gives_a_degenerate_interval(pair: tuple[Path, Path]) -> None:
    r = compare(*pair, variant="strict")  # strict is wrong everywhere in both runs
    assert r.accuracy_a == r.accuracy_b == 0.0 and r.difference == 0.0
    assert r.interval[0] == r.interval[1] == 0.0
    assert r.p_value == 1.0 and r.disagreements == []


def test_mcnemar_matches_the_binomial_by_hand(tmp_path: Path) -> None:
    # b = 2, c = 6: p = 2 * P(X <= 2 | n = 8, 1/2) = 2 * (1 + 8 + 28) / 256
    pairs = [(True, False)] * 2 + [(False, True)] * 6 + [(True, True)] * 4
    ids = [f"q{i}" for i in range(len(pairs))]
    a = _write(tmp_path, "a", dict(zip(ids, (x for x, _ in pairs), strict=True)))
    b = _write(tmp_path, "b", dict(zip(ids, (y for _, y in pairs), strict=True)))
    r = compare(a, b)
    assert r.p_value == pytest.approx(74 / 256)
    assert r.difference == pytest.approx(4 / 12)
    assert r.interval[0] < 4 / 12 < r.interval[1]
    assert mcnemar_exact(0, 0) == 1.0


def test_same_seed_same_interval(pair: tuple[Path, Path]) -> None:
    assert compare(*pair, seed=3).interval == compare(*pair, seed=3).interval


def test_refusals(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    a, _ = pair
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(UsageError, match="gsm8k/test but .* is medqa/test"):
        compare(a, _write(other, "m", {"gsm8k/test/0": True}, task="medqa"))
    with pytest.raises(UsageError, match="gsm8k/test but .* is gsm8k/train"):
        compare(a, _write(other, "t", {"gsm8k/test/0": True}, split="train"))
    with pytest.raises(UsageError, match="share no question"):
        compare(a, _write(other, "d", {"elsewhere/1": True}))
    with pytest.raises(UsageError, match=r"variant 'plus' is not in the samples; they hold strict, flexible"):
        compare(*pair, variant="plus")
    gone = _write(other, "gone", {"gsm8k/test/0": True})
    (other / "samples-gone.jsonl").unlink()
    with pytest.raises(UsageError, match=r"samples-gone\.jsonl: cannot read the samples file of .*gone\.json"):
        compare(a, gone)
    with pytest.raises(UsageError, match="names no samples file"):
        compare(a, _write(other, "nolog", {"gsm8k/test/0": True}, samples=False))
    with pytest.raises(UsageError, match=r"missing\.json: cannot read the results record"):
        compare(a, other / "missing.json")


def test_cli_text_and_json(pair: tuple[Path, Path]) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(pair[0]), str(pair[1])])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "gsm8k/test, variant flexible: 10 shared questions (1 only in A, 2 only in B)"
    assert "McNemar exact test: A right/B wrong 5, A wrong/B right 0, p = 0.0625" in result.output
    result = runner.invoke(app, ["compare", str(pair[0]), str(pair[1]), "--json", "--seed", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["seed"] == 1 and data["p_value"] == pytest.approx(0.0625) and len(data["disagreements"]) == 5
    assert data["disagreements"][0] == {"id": "gsm8k/test/2", "right": "A", "extracted_a": "7", "extracted_b": "3",
                                        "gold": "7"}


def test_cli_user_error_is_one_line_exit_2(pair: tuple[Path, Path]) -> None:
    result = subprocess.run([sys.executable, "-m", "latentbench", "compare", str(pair[0]), str(pair[1]),
                             "--variant", "base"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: variant 'base' is not in the samples; they hold strict, flexible"]
