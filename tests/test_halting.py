"""``halting``: budgets and segments from the collator, stage A/C latents, KV gating, losses, controls, trainer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import saved_tiny_model

from latentbench.methods.halting.budgets import (
    Source,
    chain_steps,
    image_source_size,
    segment_budget,
    stop_target,
)
from latentbench.methods.halting.collate import Item, collate
from latentbench.methods.halting.config import SegmentConfig
from latentbench.methods.halting.model import HaltingModel
from latentbench.methods.halting.train import HaltingTrainer
from latentbench.methods.testing import MethodTests
from latentbench.models import tiny_model
from latentbench.train.testing import TrainerTests

CFG = SegmentConfig(latent_budget_alpha=0.5, latent_budget_gamma=0.5, latent_budget_min=1, latent_budget_max=6)


@pytest.fixture(scope="module")
def lm() -> Any:
    return tiny_model("qwen2", seed=0)


def items(lm: Any, answers: bool = False) -> list[Item]:
    tok = lm.tokenizer

    def ids(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    return [Item(ids("What is 2 + 3?"), [Source("step", 30, "2 + 3 = 5"), Source("step", 4, "so 5")],
                 ids(" The answer is 5.") if answers else [], [ids("2 + 3 = 5\n"), ids("so 5\n")]),
            Item(ids("Hi there friend, what is 7 * 8 here?"), [Source("image", 64), Source("step", 100, "7 * 8 = 56")],
                 ids(" The answer is 56") if answers else [], [ids("7 * 8 = 56\n")])]


# -- budgets and the collator ------------------------------------------------------------------------------
def test_budget_formula_on_hand_computed_values() -> None:
    # B = clip(ceil(α · N^γ), min, max)
    assert segment_budget(30, CFG) == 3  # ceil(0.5 · 5.477) = ceil(2.74)
    assert segment_budget(4, CFG) == 1  # ceil(0.5 · 2) = 1
    assert segment_budget(100, CFG) == 5  # ceil(0.5 · 10) = 5
    assert segment_budget(400, CFG) == 6  # ceil(0.5 · 20) = 10, clipped to max 6
    assert segment_budget(0, CFG) == 1  # clipped up to min
    plan = SegmentConfig(latent_budget_alpha=0.02, latent_budget_gamma=0.5, latent_budget_max=32)
    assert segment_budget(10_000, plan) == 2  # ceil(0.02 · 100)
    # image segments: N = t·h·w // merge²
    assert image_source_size((1, 16, 16)) == 64
    assert image_source_size((2, 28, 42), merge=2) == 588
    assert segment_budget(image_source_size((2, 28, 42)), plan) == math.ceil(0.02 * 588 ** 0.5) == 1
    assert segment_budget(image_source_size((4, 112, 112)), plan) == math.ceil(0.02 * 12544 ** 0.5) == 3
    assert [stop_target(b, 0.7) for b in (1, 2, 3, 4, 10)] == [1, 1, 2, 3, 7]


def test_chain_steps_are_the_solution_lines_before_the_answer() -> None:
    assert chain_steps("a = <<1+1=2>>2\n\nb = 3\n#### 5\nextra") == ["a = <<1+1=2>>2", "b = 3"]


def test_collator_lays_out_segments_of_placeholders(lm: Any) -> None:
    batch = collate(items(lm, answers=True), CFG, latent_token_id=7, pad_id=lm.tokenizer.pad_token_id)
    assert batch["latent_budgets"].tolist() == [[3, 1], [4, 5]]  # N = 30, 4 | 64, 100
    ids = batch["input_ids"]
    n_prompt, width = batch["prompt_length"], batch["latent_width"]
    assert width == 9 and batch["latent_budget_total"].tolist() == [4, 9]
    assert batch["latent_image_counts"].tolist() == [0, 1]
    for row, spans in enumerate(batch["latent_segments"]):
        covered = set()
        for start, end, _ in spans:
            assert (ids[row, start:end] == 7).all()  # segments cover only latent_token_id
            covered |= set(range(start, end))
        assert [end - start for start, end, _ in spans] == batch["latent_budgets"][row][: len(spans)].tolist()
        region = range(n_prompt, n_prompt + width)
        placeholders = {p for p in region if ids[row, p] == 7 and batch["attention_mask"][row, p] == 1}
        assert placeholders == covered  # and every placeholder in the region belongs to a segment
    assert batch["step_ends"][1][0] == -1  # image segments have no written step


def test_image_segments_from_synthetic_grids(lm: Any) -> None:
    grids = [(1, 8, 8), (2, 32, 32)]
    sources = [Source("image", image_source_size(g)) for g in grids]
    batch = collate([Item([1, 2, 3], sources)], CFG, latent_token_id=7, pad_id=0)
    assert [s.size for s in sources] == [16, 512]
    assert batch["latent_budgets"].tolist() == [[2, 6]]  # ceil(0.5·4)=2; ceil(0.5·22.6)=12 -> max 6
    assert batch["latent_image_counts"].tolist() == [2]


# -- the model: stages, gating, the equivalence with no latents ----------------------------------------------
def run_batch(lm: Any, config: SegmentConfig = CFG, answers: bool = True) -> tuple[HaltingModel, dict[str, Any]]:
    model = HaltingModel(lm, config)
    return model, collate(items(lm, answers), config, model.latent_token_id, lm.tokenizer.pad_token_id)


def test_stage_a_uses_every_budgeted_latent(lm: Any) -> None:
    model, batch = run_batch(lm)
    with torch.no_grad():
        run = model.run_latents(batch, stage="A")
    assert run.used == [[3, 1], [4, 5]]
    assert run.latent_kv_mask.sum(1).tolist() == batch["latent_budget_total"].tolist()


@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_stage_c_stops_early_and_masks_the_rest(lm: Any, threshold: float) -> None:
    model, batch = run_batch(lm)
    with torch.no_grad():
        torch.nn.init.normal_(model.stop_head.weight, std=0.5)  # p_stop spread around 0.5
        run = model.run_latents(batch, stage="C", threshold=threshold)
    mask = run.latent_kv_mask
    for row, spans in enumerate(batch["latent_segments"]):
        for (start, end, index), used in zip(spans, run.used[row], strict=True):
            assert 1 <= used <= end - start
            seg = mask[row, start - batch["prompt_length"]:end - batch["prompt_length"]].tolist()
            assert seg == [True] * used + [False] * (end - start - used)  # True…True False…False
            probs = [float(p) for p in run.stop_probs[row][index]]
            assert len(probs) == used
            stop_at = next((i + 1 for i, p in enumerate(probs) if p >= threshold), end - start)
            assert used == stop_at  # the first p_stop >= threshold ends it, else the budget
    if threshold == 0.0:
        assert run.used == [[1, 1], [1, 1]]
    if threshold == 1.0:
        assert run.used == [[3, 1], [4, 5]]


def test_gated_slots_hold_no_latent_and_scaled_kv(lm: Any) -> None:
    force = [[1, 1], [2, 0]]
    runs = {}
    for scale in (1.0, 0.25, 0.0):
        model, batch = run_batch(lm, SegmentConfig(**{**CFG.__dict__, "latent_null_scale": scale}))
        with torch.no_grad():
            runs[scale] = model.run_latents(batch, stage="A", force_used=force)
    assert [len(x) for x in runs[1.0].latents[1]] == [2, 0]  # unused placeholders are never patched with latents
    gated = ~runs[1.0].mask.bool()  # gated slots (and prompt padding)
    gated[:, : batch["prompt_length"]] = False
    assert gated.sum() == (9 - 2) + (9 - 2)  # per row: width 9, 2 used (padding slots are gated too)
    for plain, quarter, zero in zip(*(runs[s].cache.layers for s in (1.0, 0.25, 0.0)), strict=True):
        for name in ("keys", "values"):
            a, b, c = (getattr(x, name).transpose(1, 2) for x in (plain, quarter, zero))  # [B, pos, heads, dim]
            torch.testing.assert_close(b[gated], 0.25 * a[gated])
            assert c[gated].abs().sum() == 0
            torch.testing.assert_close(b[~gated], a[~gated])  # used positions untouched


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_dropping_every_latent_equals_the_input_without_latents(attn: str) -> None:
    lm = tiny_model("qwen2", seed=0)
    lm.model.set_attn_implementation(attn)
    model, batch = run_batch(lm)
    with torch.no_grad():
        run = model.run_latents(batch, stage="C", force_used=[[0, 0], [0, 0]])
        start = batch["prompt_length"] + batch["latent_width"]
        logits = model.answer_logits(run, batch["input_ids"][:, start:], batch["attention_mask"][:, start:])
        for row, it in enumerate(items(lm, answers=True)):
            ref = lm.model(torch.tensor([it.prompt_ids + it.answer_ids])).logits[0]
            n, a = len(it.prompt_ids), len(it.answer_ids)
            # measured: max |Δ| ≈ 2.4e-7 (float32), positions identical since gated slots do not advance them
            torch.testing.assert_close(logits[row, :a], ref[n - 1:n + a - 1], atol=1e-5, rtol=0)


# -- the method: conformance, controls ------------------------------------------------------------------------
class TestHaltingStageA(MethodTests):
    method = "halting"
    arch = "qwen2"
    config = {"max_new_tokens": 6, "batch_size": 2, "segments": 2, "segment_size": 16}


class TestHaltingStageCGold(MethodTests):
    method = "halting"
    arch = "qwen2"
    task = "gsm8k"
    config = {"max_new_tokens": 6, "batch_size": 2, "plan": "gold", "latent_mode_stage": "C"}

    @pytest.fixture(scope="class")
    @classmethod
    def task_and_examples(cls) -> tuple[Any, list[Any]]:  # train questions: gold steps are for training data
        from latentbench.paths import data_dir
        from latentbench.tasks import get_task

        task = get_task(cls.task)
        return task, task.examples("train", limit=cls.n_examples, data_dir=data_dir())

    def test_gold_plan_has_one_segment_per_solution_line(self, outcomes: list[Any]) -> None:
        for o in outcomes:
            steps = chain_steps(o.example.meta["solution"])
            assert [s["source"].text for s in o.artifacts["segments"]] == steps
            assert all(1 <= s["used"] <= s["budget"] for s in o.artifacts["segments"])


def eval_halting(tmp_path: Path, name: str, **args: Any) -> dict[str, Any]:
    from latentbench.eval.evaluator import EvalRequest, evaluate

    record, _ = evaluate(EvalRequest(task="gsm8k", method="halting", limit=3, model=str(saved_tiny_model("qwen2", seed=1)),
                                     output_path=str(tmp_path / name), show_progress=False,
                                     method_args={"max_new_tokens": 4, "segments": 2, "segment_size": 36, **args}))
    return record


def test_controls_change_only_what_they_name(tmp_path: Path) -> None:
    stage_c = {"latent_mode_stage": "C", "latent_stop_threshold": 0.0}  # an untrained head: stop after one latent
    runs = {name: eval_halting(tmp_path, name, **args) for name, args in {
        "A": {}, "C": stage_c, "full": {**stage_c, "control": "full"}, "none": {"control": "none"},
        "noise": {"control": "noise"}}.items()}
    per_question = {name: r["method_metrics"]["latents_per_question"] for name, r in runs.items()}
    budget = 2 * math.ceil(0.5 * 36 ** 0.5)
    assert per_question == {"A": budget, "C": 2, "full": budget, "none": 0, "noise": budget}
    assert runs["C"]["method_metrics"]["halting_rate"] == 1.0 and runs["full"]["method_metrics"]["halting_rate"] == 0.0
    assert runs["A"]["method_metrics"]["latent_budget_use"] == 1.0
    assert runs["C"]["method_metrics"]["latent_budget_use"] == pytest.approx(2 / budget)


def test_noise_latents_keep_the_norm_and_drop_the_direction(lm: Any) -> None:
    model, batch = run_batch(lm, answers=False)
    with torch.no_grad():
        real = model.run_latents(batch, stage="A")
        noisy = model.run_latents(batch, stage="A", noise=torch.Generator().manual_seed(0))
    a, b = real.latents[0][0][0], noisy.latents[0][0][0]  # the first latent: same hidden state before it
    assert float(b.norm()) == pytest.approx(float(a.norm()), rel=1e-5)
    assert abs(torch.nn.functional.cosine_similarity(a, b, dim=0)) < 0.5


# -- training ---------------------------------------------------------------------------------------------
def halting_dataset(path: Path, model: Path, limit: int, offset: int = 0, **args: Any) -> Path:
    from latentbench.generate import GenerateRequest, generate

    generate(GenerateRequest(task="gsm8k", method="halting", split="train", limit=limit, offset=offset,
                             model=str(model), output=str(path), show_progress=False,
                             method_args={"plan": "gold", "max_new_tokens": 4, **args}))
    return path


class TestHaltingTrainerStageA(TrainerTests):
    trainer_class = HaltingTrainer
    config_overrides = {"latent_mode_stage": "A", "learning_rate": 1e-2}
    unused_parameters = ("stop_head",)  # stage A has no stop or cost term

    def make_datasets(self, tmp_path: Path) -> list[Path]:
        model = saved_tiny_model("qwen2", seed=1)
        return [halting_dataset(tmp_path / "a", model, 6), halting_dataset(tmp_path / "b", model, 4, offset=6)]


class TestHaltingTrainerStageC(TestHaltingTrainerStageA):
    config_overrides = {"latent_mode_stage": "C", "learning_rate": 1e-2}
    unused_parameters = ()


def test_stage_c_loss_terms_on_a_hand_made_segment(lm: Any) -> None:
    """BCE against stop = 1 exactly at max(1, round(ρ·B)), 0 before; cost = Σ expected used latents."""
    trainer = HaltingTrainer(HaltingTrainer.config_class(latent_mode_stage="C", latent_cost_weight=0.5,
                                                          latent_align_weight=0.0, **{
        k: v for k, v in CFG.__dict__.items() if k.startswith("latent_budget")}))
    model, batch = run_batch(lm)
    loss, metrics = trainer.loss(model, batch)
    with torch.no_grad():
        run = model.run_latents(batch, stage="C", force_used=[[2, 1], [3, 4]])  # targets of budgets 3,1 | 4,5
    probs = [torch.stack(p) for row in run.stop_probs for p in row]
    assert [len(p) for p in probs] == [2, 1, 3, 4]
    labels = [torch.tensor([0.0] * (len(p) - 1) + [1.0]) for p in probs]
    bce = torch.nn.functional.binary_cross_entropy(torch.cat(probs), torch.cat(labels))
    expected = sum(float(sum(torch.prod(1 - p[:k]) for k in range(len(p)))) for p in probs) / 2
    assert metrics["stop_bce"] == pytest.approx(float(bce), rel=1e-4)
    assert metrics["expected_latents"] == pytest.approx(expected, rel=1e-4)
    assert float(loss.detach()) == pytest.approx(metrics["ce"] + float(bce) + 0.5 * expected, rel=1e-4)


def test_stage_a_steps_schedule_then_stage_c(tmp_path: Path) -> None:
    from latentbench.train import run_training
    from latentbench.train.testing import metric_lines

    model = saved_tiny_model("qwen2", seed=1)
    data = [halting_dataset(tmp_path / "d", model, 4)]
    config = HaltingTrainer.config_class(latent_mode_stage="C", stage_a_steps=2, max_steps=4, batch_size=2,
                                         val_fraction=0.0)
    run_training(HaltingTrainer(config), data, tmp_path / "out", show_progress=False)
    assert [line["stage_c"] for line in metric_lines(tmp_path / "out", "train")] == [0.0, 0.0, 1.0, 1.0]
    # the checkpoint drives eval: a learned stop head ends segments within their budgets
    record = eval_halting(tmp_path, "trained", checkpoint=str(tmp_path / "out"), latent_mode_stage="C")
    assert 1 <= record["method_metrics"]["latents_per_question"] <= 2 * math.ceil(0.5 * 36 ** 0.5)


def test_gold_plan_of_a_solution_without_steps_has_no_segments(lm: Any) -> None:
    from latentbench.errors import UsageError
    from latentbench.methods.base import make_method
    from latentbench.tasks import Example

    method = make_method("halting", {"plan": "gold"})
    assert method.sources(lm, Example("q/1", "What is 4 + 5?", "9", meta={"solution": "#### 9"})) == []
    steps = method.sources(lm, Example("q/2", "?", "3", meta={"solution": "1 + 2 = 3\n#### 3"}))
    assert [(s.kind, s.text) for s in steps] == [("step", "1 + 2 = 3")]
    assert steps[0].size == len(lm.tokenizer("1 + 2 = 3", add_special_tokens=False)["input_ids"])
    with pytest.raises(UsageError, match="plan=gold: q/3 has no reference solution"):
        method.sources(lm, Example("q/3", "?", "3"))
    batch = collate([Item([1, 2], []), Item([3], [Source("step", 4)])], CFG, latent_token_id=7, pad_id=0)
    assert batch["latent_budgets"].tolist() == [[0], [1]] and batch["latent_width"] == 1


class TestHaltingTrainerStageCPosition(TestHaltingTrainerStageA):
    config_overrides = {"latent_mode_stage": "C", "learning_rate": 1e-2, "stop_features": "hidden+position"}
    unused_parameters = ()


def test_a_position_aware_stop_head_reads_the_place_in_the_segment(lm: Any) -> None:
    config = SegmentConfig(**{**CFG.__dict__, "stop_features": "hidden+position"})
    model, batch = run_batch(lm, config)
    with torch.no_grad():
        model.stop_head.weight.zero_()
        model.stop_head.weight[0, -2] = 20.0  # only (k+1)/budget: stop once past half the segment
        model.stop_head.bias.fill_(-10.0)
        run = model.run_latents(batch, stage="C")
    # budgets [[3, 1], [4, 5]]: p >= 0.5 at the first k with (k+1)/B >= 0.5
    assert run.used == [[2, 1], [2, 3]]


def test_init_from_a_checkpoint_whose_stop_head_reads_other_features(tmp_path: Path) -> None:
    from latentbench.train import run_training
    from latentbench.train.checkpoint import load_checkpoint
    from latentbench.train.data import TrainData

    model = saved_tiny_model("qwen2", seed=1)
    data = [halting_dataset(tmp_path / "d", model, 4)]
    common = {"max_steps": 1, "batch_size": 2, "val_fraction": 0.0, "learning_rate": 1e-2}
    run_training(HaltingTrainer(HaltingTrainer.config_class(latent_mode_stage="A", **common)), data,
                 tmp_path / "a", show_progress=False)
    trainer = HaltingTrainer(HaltingTrainer.config_class(latent_mode_stage="C", stop_features="hidden+position",
                                                         init=str(tmp_path / "a"), **common))
    module = trainer.build(TrainData(data, trainer.table, val_fraction=0.0))
    start = HaltingModel(trainer._lm, SegmentConfig())
    load_checkpoint(tmp_path / "a", start)
    assert torch.equal(module.adapter.weight, start.adapter.weight) and module.adapter.weight.abs().sum() > 0
    assert module.stop_head.weight.shape[1] == start.stop_head.weight.shape[1] + 2
