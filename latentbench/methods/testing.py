"""Conformance tests every method inherits, like ``TaskAdapterTests`` and ``DatasetKindTests``.

    class TestCot(MethodTests):
        method = "cot"
        config = {"max_new_tokens": 4, "batch_size": 2}

Runs the registered method on a tiny random-weight model over a few real task examples and checks:
one ``Outcome`` per example, in order; the same seed gives the same outputs; the config round-trips
through CLI-style strings and JSON; what the method writes (if it writes datasets) passes
``latentbench validate`` (an eval-only method is refused by ``generate``); token, forward and latent
counts are consistent with the budgets (the evaluator's sums are tested in tests/test_eval.py); the
record's extras are well formed (one truncation flag per output, each agent's turn named, ``resolved``
keeps every config field).
Needs pytest (a dev dependency); import it from tests only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from latentbench.config import config_dict, config_fields
from latentbench.methods.base import Outcome, dataset_kind, make_method


def as_cli_string(value: Any) -> str:
    """A value as the user would type it after ``--method-arg key=``."""
    return json.dumps(value) if isinstance(value, dict | list | tuple) else str(value)


class MethodTests:
    method: ClassVar[str]  # registry name
    config: ClassVar[dict[str, Any]] = {}  # small settings for a fast run
    task: ClassVar[str] = "gsm8k"
    n_examples: ClassVar[int] = 3
    arch: ClassVar[str] = "llama"
    seed: ClassVar[int] = 7

    def decoded_per_outcome(self, method: Any) -> int:
        """Text sequences decoded per example (cost bound); override where a method decodes several."""
        return getattr(method.config, "num_samples", 1)

    # -- fixtures ----------------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def lm(cls) -> Any:
        from latentbench.models import tiny_model

        return tiny_model(cls.arch, seed=0)

    @pytest.fixture(scope="class")
    @classmethod
    def task_and_examples(cls) -> tuple[Any, list[Any]]:
        from latentbench.paths import data_dir
        from latentbench.tasks import get_task

        task = get_task(cls.task)
        return task, task.examples(task.split(None), limit=cls.n_examples, data_dir=data_dir())

    @classmethod
    def build(cls, seed: int | None = None) -> Any:
        return make_method(cls.method, dict(cls.config), seed=cls.seed if seed is None else seed)

    @classmethod
    def run_method(cls, lm: Any, task_and_examples: tuple[Any, list[Any]], seed: int | None = None) -> list[Outcome]:
        import torch

        task, examples = task_and_examples
        torch.manual_seed(cls.seed if seed is None else seed)  # as the evaluator and generate do
        return list(cls.build(seed).run(lm, task, examples))

    @pytest.fixture(scope="class")
    @classmethod
    def outcomes(cls, lm: Any, task_and_examples: tuple[Any, list[Any]]) -> list[Outcome]:
        return cls.run_method(lm, task_and_examples)

    # -- tests -------------------------------------------------------------------------------------
    def test_one_outcome_per_example_in_order(self, outcomes: list[Outcome], task_and_examples: tuple) -> None:
        _, examples = task_and_examples
        assert [o.example.id for o in outcomes] == [ex.id for ex in examples]
        for o in outcomes:
            assert o.outputs and all(isinstance(t, str) for t in o.outputs)
            assert o.prompt and all(isinstance(v, float | int) for v in o.metrics.values())

    def test_same_seed_same_outputs(self, lm: Any, task_and_examples: tuple, outcomes: list[Outcome]) -> None:
        again = self.run_method(lm, task_and_examples)
        assert [(o.outputs, o.generated_tokens, o.forward_passes, o.latent_steps) for o in again] == \
               [(o.outputs, o.generated_tokens, o.forward_passes, o.latent_steps) for o in outcomes]

    def test_config_round_trips_through_cli_strings_and_json(self) -> None:
        from latentbench.config import build_config

        method = self.build()
        cls = type(method.config)
        as_json = json.loads(json.dumps(config_dict(method.config)))
        assert build_config(cls, as_json) == method.config
        as_cli = {f.name: as_cli_string(getattr(method.config, f.name)) for f in config_fields(cls)}
        assert build_config(cls, as_cli) == method.config
        assert method.config.__class__ is type(method).config_class

    def test_run_seed_reaches_the_config(self) -> None:
        method = self.build(seed=1234)
        if any(f.name == "seed" for f in config_fields(type(method).config_class)):
            assert method.config.seed == 1234

    def test_written_dataset_validates(self, outcomes: list[Outcome], tmp_path: Path) -> None:
        from latentbench.errors import UsageError
        from latentbench.store import DatasetWriter, open_dataset, validate_dataset
        from latentbench.store.synthetic import INFO

        method = self.build()
        if not method.dataset_kinds:  # eval only: generate refuses it in one line
            with pytest.raises(UsageError, match=f"{self.method} writes no datasets"):
                dataset_kind(method, None)
        for kind, extra in method.dataset_kinds.items():
            writer = DatasetWriter(tmp_path / kind, kind=kind, info=INFO, extra_kinds=list(extra))
            for outcome in outcomes:
                with writer.example(outcome.example.id) as ex:
                    method.write(ex, outcome, kind)
            writer.finalize()
            assert validate_dataset(tmp_path / kind) == []
            assert open_dataset(tmp_path / kind).manifest["counts"]["examples"] == len(outcomes)
            if hasattr(method, "summarize"):
                assert method.summarize(open_dataset(tmp_path / kind))

    def test_counts_add_up(self, outcomes: list[Outcome]) -> None:
        """Per example: tokens within the decoded sequences' budget, latent steps within the latent budget,
        at least one forward pass per decoded position of the longest sequence."""
        method = self.build()
        max_new = getattr(method.config, "max_new_tokens", 0)
        decoded = self.decoded_per_outcome(method)
        for o in outcomes:
            assert o.generated_tokens >= 0 and o.latent_steps >= 0 and o.forward_passes >= 1
            if max_new:
                assert o.generated_tokens <= decoded * max_new
            if o.latent_budget is not None:
                assert o.latent_steps <= o.latent_budget
            assert o.forward_passes >= o.generated_tokens / decoded  # one forward per new position, or more

    def test_record_extras_are_well_formed(self, outcomes: list[Outcome], task_and_examples: tuple) -> None:
        from latentbench.methods.base import resolved_config

        method = self.build()
        resolved = resolved_config(method, task_and_examples[0])
        assert set(resolved) == set(config_dict(method.config))  # the values used, not other keys
        if "max_new_tokens" in resolved:
            assert resolved["max_new_tokens"] > 0  # 0 means "the task card's": resolved says which
        for o in outcomes:
            assert o.truncated is None or (len(o.truncated) == len(o.outputs)
                                           and all(isinstance(t, bool) for t in o.truncated))
            assert o.agent_prompts is None or all(set(t) == {"role", "prompt"} and t["prompt"]
                                                  for t in o.agent_prompts)
