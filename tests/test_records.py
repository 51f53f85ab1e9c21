"""Complete records (#15 item 6): resolved budgets, the chat wrapping, truncation, time per question,
standard errors, every agent's prompt and the tasks' own ids."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from latentbench.eval.evaluator import EvalRequest, evaluate
from latentbench.eval.metrics import standard_errors
from latentbench.models import tiny_model
from latentbench.paths import data_dir
from latentbench.tasks import get_task


def first(task: str, n: int = 1) -> list:
    return get_task(task).examples(limit=n, data_dir=data_dir())


@pytest.fixture(scope="module")
def lm():
    return tiny_model("qwen3", seed=0)


def run(lm: Any, tmp_path: Path, method: str = "cot", limit: int = 3, task: str = "gsm8k",
        **config: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    req = EvalRequest(task=task, method=method, limit=limit, output_path=str(tmp_path), show_progress=False,
                      method_args={k: str(v) for k, v in config.items()})
    record, path = evaluate(req, lm=lm)
    samples = [json.loads(line) for line in (path.parent / record["samples_file"]).read_text().splitlines()]
    return record, samples


def test_a_budget_of_0_is_recorded_as_the_task_cards_budget_used(lm, tmp_path: Path) -> None:
    record, samples = run(lm, tmp_path, limit=1)  # max_new_tokens 0: the card's
    budget = get_task("gsm8k").card.max_new_tokens
    assert record["method"]["config"]["max_new_tokens"] == 0  # as given: reproduce and the run's key use it
    assert record["method"]["resolved"]["max_new_tokens"] == budget
    assert samples[0]["generated_tokens"] <= budget
    assert samples[0]["truncated"] == (samples[0]["generated_tokens"] == budget)


@pytest.mark.parametrize("method", ["cot", "latent-mas", "text-mas", "latent-tree"])
def test_an_output_cut_at_a_budget_of_3_tokens_is_truncated(lm, tmp_path: Path, method: str) -> None:
    small = {"cot": {}, "text-mas": {"agents": 1}, "latent-mas": {"agents": 1, "latent_steps": 1},
             "latent-tree": {"agents": 1, "latent_steps": 1, "branches": 1, "keep": 1}}[method]
    record, samples = run(lm, tmp_path, method, limit=2, max_new_tokens=3, **small)
    assert record["method"]["resolved"]["max_new_tokens"] == 3
    assert all(s["truncated"] is True for s in samples)  # a random model never says EOS within 3 tokens
    assert record["cost"]["truncated_outputs"] == 2


def test_an_output_that_ends_with_eos_is_not_truncated(tmp_path: Path) -> None:
    import torch

    lm = tiny_model("qwen3", seed=0)
    task = get_task("gsm8k")
    (example,) = first("gsm8k")
    from latentbench.methods.generation import chat_text

    ids = lm.tokenizer(chat_text(lm, task.prompt(example)), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        token = int(lm.model(**ids).logits[0, -1].argmax())
    lm.model.generation_config.eos_token_id = token  # the greedy first token now ends the answer
    record, samples = run(lm, tmp_path, limit=1, max_new_tokens=3)
    assert samples[0]["generated_tokens"] == 0 and samples[0]["truncated"] is False
    assert record["cost"]["truncated_outputs"] == 0


def test_the_chat_wrapping_is_recorded(lm, tmp_path: Path) -> None:
    record, samples = run(lm, tmp_path / "default", max_new_tokens=2)
    chat = record["chat"]
    assert chat["template_sha256"] == hashlib.sha256(lm.tokenizer.chat_template.encode()).hexdigest()
    assert chat["system_prompt"] is None  # cot's "": the template's own default system turn
    assert chat["rendered_system_prompt"] and all(s["prompt"].startswith(chat["rendered_system_prompt"]) for s in samples)
    record, samples = run(lm, tmp_path / "own", max_new_tokens=2, system_prompt="Be brief.")
    assert record["chat"]["system_prompt"] == "Be brief."
    assert "Be brief." in record["chat"]["rendered_system_prompt"]
    assert samples[0]["prompt"].startswith(record["chat"]["rendered_system_prompt"])


def test_compact_protocol_records_that_it_passes_no_system_message(lm, tmp_path: Path) -> None:
    record, _ = run(lm, tmp_path, "latent-mas", limit=1, max_new_tokens=2, agents=1, latent_steps=1,
                    protocol="compact")
    assert record["method"]["config"]["system_prompt"] and record["method"]["resolved"]["system_prompt"] == ""
    assert record["chat"]["system_prompt"] is None


def test_each_question_of_a_batch_gets_its_share_of_the_batch_time(lm, tmp_path: Path) -> None:
    record, samples = run(lm, tmp_path, limit=4, max_new_tokens=3, batch_size=2)
    for batch in {s["batch"] for s in samples}:
        times = {s["time_s"] for s in samples if s["batch"] == batch}
        assert len(times) == 1 and times.pop() >= 0  # not the whole batch on its first question
    assert sum(s["time_s"] for s in samples) == pytest.approx(record["cost"]["wall_time_s"], abs=0.01)


def test_every_accuracy_has_its_standard_error(lm, tmp_path: Path) -> None:
    record, samples = run(lm, tmp_path, max_new_tokens=2)
    accuracies = {k for k in record["metrics"] if k.startswith("accuracy_")}
    assert accuracies and set(record["stderr"]) == accuracies
    hits = [1.0, 0.0, 1.0, 1.0]
    errors = standard_errors([{"flexible": [bool(h)]} for h in hits], ("flexible",), code=False)
    assert errors["accuracy_flexible"] == pytest.approx(np.std(hits, ddof=1) / 2)  # 0.25, as lm-eval computes it
    assert standard_errors([{"flexible": [True]}], ("flexible",), code=False) == {"accuracy_flexible": None}
    code = standard_errors([{"base": [True, False]}, {"base": [False, False]}], ("base",), code=True)
    assert set(code) == {"pass@1_base", "pass@2_base"}


@pytest.mark.parametrize(("protocol", "roles"), [("latentmas", ["planner", "critic", "judger"]),
                                                 ("compact", ["planner", "critic", "solver"])])
def test_latent_mas_samples_keep_every_agents_prompt(lm, tmp_path: Path, protocol: str, roles: list[str]) -> None:
    _, samples = run(lm, tmp_path, "latent-mas", limit=2, max_new_tokens=2, agents=2, latent_steps=1,
                     protocol=protocol, batch_size=2)
    question = first("gsm8k")[0].question
    turns = samples[0]["agent_prompts"]
    assert [t["role"] for t in turns] == roles
    assert samples[0]["prompt"] == turns[0]["prompt"]
    assert question in turns[0]["prompt"] and len({t["prompt"] for t in turns}) == len(turns)
    if protocol == "latentmas":
        assert all(question in t["prompt"] for t in turns)  # every agent is re-prompted with the question


def test_latent_mas_without_latent_steps_records_the_judgers_turn_only(lm, tmp_path: Path) -> None:
    _, samples = run(lm, tmp_path, "latent-mas", limit=1, max_new_tokens=2, agents=2, latent_steps=0)
    assert [t["role"] for t in samples[0]["agent_prompts"]] == ["judger"]  # the agents' turns never ran


def test_text_mas_samples_keep_every_agents_prompt(lm, tmp_path: Path) -> None:
    record, samples = run(lm, tmp_path, "text-mas", limit=1, max_new_tokens=3, agents=2)
    turns = samples[0]["agent_prompts"]
    assert [t["role"] for t in turns] == ["planner", "critic", "judger"]
    assert turns[-1]["prompt"] == samples[0]["prompt"]
    assert "[Planner]:" in turns[1]["prompt"] and "[Planner]:" not in turns[0]["prompt"]  # each reads those before
    assert record["method"]["resolved"]["agent_max_new_tokens"] == 3  # 0: the judger's budget
    assert record["method_metrics"]["agents_truncated"] == 2


def test_samples_keep_the_tasks_own_ids(lm, tmp_path: Path) -> None:
    _, samples = run(lm, tmp_path, limit=2, max_new_tokens=1)
    assert [(s["id"], s["task_id"]) for s in samples] == [("gsm8k/test/0", "0"), ("gsm8k/test/1", "1")]
    assert samples[0]["agent_prompts"] is None  # one prompt: cot has no agents
    for task, own in [("humaneval", "HumanEval/0"), ("mbppplus", "Mbpp/2")]:
        (example,) = first(task)
        assert example.task_id == own and example.id == f"{task}/test/{own.split('/')[-1]}"
    (gpqa,) = first("gpqa")
    assert gpqa.task_id and gpqa.id.endswith(gpqa.task_id)


def test_committed_records_still_validate() -> None:
    from latentbench.eval.schema import validate_results

    records = sorted((Path(__file__).parents[1] / "leaderboards" / "results").glob("*.json"))
    assert records
    for path in records:
        validate_results(json.loads(path.read_text()))
