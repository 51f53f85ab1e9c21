"""``spd``: speculative decoding with a mismatch judge; its traces, mined labels and the judge's trainers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import saved_tiny_model

from latentbench.errors import UsageError
from latentbench.methods.generation import eos_token_ids
from latentbench.methods.spd.decode import Sampling, Trace, accept_all, compact, speculative_decode
from latentbench.methods.spd.draft import Side, make_draft
from latentbench.methods.spd.train import SpdJudgeConfig, SpdJudgeTrainer, bernoulli_kl, grpo_policy_loss
from latentbench.models import tiny_model
from latentbench.train.advantages import grpo_advantages
from latentbench.train.testing import TrainerTests

PROMPTS = ["Hello there, how are you", "The capital of France is a city called", "1 2 3 4 5 6 7 8 9",
           "def f(x):\n    return", "Q: what is 3 + 4?\nA:", "Once upon a time", "import numpy as np\n",
           "The quick brown fox jumps over the lazy dog. The quick"]


@pytest.fixture(scope="module")
def lm() -> Any:
    return tiny_model("qwen2", seed=3, layers=4)


def decode(lm: Any, prompts: list[list[int]], **kw: Any) -> list[Trace]:
    draft = make_draft(lm, kw.pop("draft", "layers:2"))
    return speculative_decode(Side.of(lm), draft, lm.model.get_input_embeddings(), prompts,
                              eos_ids=eos_token_ids(lm), pad_id=lm.tokenizer.pad_token_id, **kw)


def target_only(lm: Any, prompt: list[int], max_new: int) -> list[int]:
    out = lm.model.generate(torch.tensor([prompt]), max_new_tokens=max_new, do_sample=False,
                            pad_token_id=lm.tokenizer.pad_token_id)[0, len(prompt):].tolist()
    eos = eos_token_ids(lm)
    return out[:next((i for i, t in enumerate(out) if t in eos), len(out))]


@pytest.mark.parametrize("gamma", [1, 2, 3, 5])
def test_standard_sd_is_token_identical_to_target_greedy(lm: Any, gamma: int) -> None:
    """judge=none is lossless: the whole ragged batch decodes exactly what the target decodes alone."""
    prompts = [lm.tokenizer(t)["input_ids"] for t in PROMPTS]
    traces = decode(lm, prompts, gamma=gamma, max_new_tokens=40)
    for prompt, trace in zip(prompts, traces, strict=True):
        assert trace.tokens == target_only(lm, prompt, 40)
    assert sum(len(t.mismatches) for t in traces) > 0  # the draft disagrees: rejections were exercised
    assert sum(t.accepted_drafts for t in traces) > 0  # ... and agrees: acceptances were too
    for trace in traces:
        assert not any(s["accepted"] for s in trace.mismatches)
        assert trace.proposed == gamma * trace.verifications and len(trace.features) == len(trace.mismatches)
        assert all(s["position"] <= len(trace.tokens) for s in trace.steps)  # none past the EOS or budget
        assert trace.verifications < len(trace.tokens) + 1 or gamma == 1


def test_judge_always_keeps_every_draft_token(lm: Any) -> None:
    prompts = [lm.tokenizer(t)["input_ids"] for t in PROMPTS[:4]]
    traces = decode(lm, prompts, gamma=4, max_new_tokens=24, decide=accept_all)
    for trace in traces:
        assert all(s["accepted"] for s in trace.steps)
        assert trace.metrics()["acceptance_rate"] == 1.0 and trace.metrics()["judge_accept_share"] == 1.0
        drafted = [tok for k, tok in enumerate(trace.tokens) if k % 5 != 4]  # every 5th token is the bonus
        assert drafted == [s["emitted_token"] for s in trace.steps][:len(drafted)]
        # 4 drafts and a bonus per target forward
        assert len(trace.tokens) < 24 or trace.verifications == -(-24 // 5)


def test_a_draft_equal_to_the_target_is_always_accepted(lm: Any) -> None:
    """Greedy: every draft token matches. Sampling: p == q, so the rejection test always passes."""
    prompts = [lm.tokenizer(t)["input_ids"] for t in PROMPTS[:3]]
    same = make_draft(lm, "model", lm)
    for sampling in (Sampling(), Sampling(1.0, 0.9, torch.Generator().manual_seed(0))):
        traces = speculative_decode(Side.of(lm), same, lm.model.get_input_embeddings(), prompts, gamma=3,
                                    max_new_tokens=20, eos_ids=eos_token_ids(lm), sampling=sampling,
                                    pad_id=lm.tokenizer.pad_token_id)
        assert all(not t.mismatches for t in traces)


def test_sampled_decoding_is_seeded(lm: Any) -> None:
    prompts = [lm.tokenizer(t)["input_ids"] for t in PROMPTS[:3]]
    runs = [decode(lm, prompts, gamma=3, max_new_tokens=20,
                   sampling=Sampling(1.0, 1.0, torch.Generator().manual_seed(s))) for s in (1, 1, 2)]
    tokens = [[t.tokens for t in run] for run in runs]
    assert tokens[0] == tokens[1] and tokens[0] != tokens[2]


def test_metrics_of_a_hand_made_trace() -> None:
    """γ = 3, two verifications: [match, match, mismatch rejected] then [mismatch accepted, match, match] + bonus."""
    def step(step: int, match: bool, accepted: bool) -> dict[str, Any]:
        return {"step": step, "match": match, "accepted": accepted}

    trace = Trace(tokens=list(range(7)), verifications=2, proposed=6, draft_forwards=6,
                  steps=[step(0, True, True), step(0, True, True), step(0, False, False),
                         step(1, False, True), step(1, True, True), step(1, True, True)])
    m = trace.metrics()
    assert m["acceptance_rate"] == pytest.approx(5 / 6)  # 5 accepted draft tokens of 6 proposed
    assert m["mean_accepted_length"] == pytest.approx(1 + 5 / 2)
    assert m["target_forwards_per_token"] == pytest.approx(2 / 7)
    assert m["judge_accept_share"] == pytest.approx(1 / 2)
    assert m["mismatches_per_verification"] == pytest.approx(1.0)


def test_compact_moves_valid_positions_right_and_keeps_their_values() -> None:
    from transformers import DynamicCache

    keys = torch.arange(2 * 1 * 4 * 2, dtype=torch.float).view(2, 1, 4, 2)
    cache = DynamicCache()
    cache.update(keys, -keys, 0)
    mask = torch.tensor([[1, 0, 1, 0], [1, 1, 1, 1]])
    out, new_mask = compact(cache, mask)
    assert new_mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    assert torch.equal(out.layers[0].keys[0, 0, 2:], keys[0, 0, [0, 2]])
    assert torch.equal(out.layers[0].values[1], -keys[1])


def test_grpo_advantages_and_loss_on_a_hand_made_group() -> None:
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    adv = grpo_advantages(rewards).flatten()
    std = torch.tensor([1.0, 0.0, 1.0, 0.0]).std()
    assert torch.allclose(adv, torch.tensor([0.5, -0.5, 0.5, -0.5]) / (std + 1e-4))
    logits = torch.tensor([0.0, 2.0, -1.0], requires_grad=True)
    taken = torch.tensor([True, False, True])
    logp = torch.where(taken, torch.nn.functional.logsigmoid(logits), torch.nn.functional.logsigmoid(-logits))
    # rollout 0 made the three decisions, rollout 1 the first one, rollouts 2 and 3 none
    loss = grpo_policy_loss([logp, logp[:1], logp[:0], logp[:0]], adv)
    expected = -(adv[0] * logp.mean() + adv[1] * logp[0]) / 4
    assert torch.allclose(loss, expected)
    loss.backward()
    # rollout 0 (positive advantage) and rollout 1 (negative) both hold decision 0: their pushes differ in weight
    assert logits.grad[1] > 0 and logits.grad[2] < 0  # make rollout 0's reject more, accept more likely
    assert bernoulli_kl(torch.tensor([0.3]), torch.tensor([0.3])).abs().item() < 1e-7
    assert bernoulli_kl(torch.tensor([2.0]), torch.tensor([-2.0])).item() > 0


def test_a_draft_with_another_tokenizer_is_refused(lm: Any) -> None:
    class OtherTokenizer:
        eos_token_id = lm.tokenizer.eos_token_id

        def get_vocab(self) -> dict[str, int]:
            return {"a": 0}

    other = type(lm)(lm.model, OtherTokenizer(), "other", None, "random")
    with pytest.raises(UsageError, match="tokenizer differs"):
        make_draft(lm, "model", other)
    with pytest.raises(UsageError, match="L must be in"):
        make_draft(lm, "layers:4")


# -- datasets, training, the learned judge ----------------------------------------------------------------
def spd_dataset(path: Path, model: Path, limit: int, offset: int = 0, **args: Any) -> Path:
    from latentbench.generate import GenerateRequest, generate

    generate(GenerateRequest(task="gsm8k", method="spd", split="train", limit=limit, offset=offset,
                             model=str(model), output=str(path), show_progress=False,
                             method_args={"draft": "layers:1", "max_new_tokens": 12, "gamma": 3, **args}))
    return path


class TestSupervisedJudge(TrainerTests):
    trainer_class = SpdJudgeTrainer
    config_overrides = {"algo": "supervised"}

    def make_datasets(self, tmp_path: Path) -> list[Path]:
        model = saved_tiny_model("qwen2", seed=1)
        return [spd_dataset(tmp_path / "a", model, 6, mine=4), spd_dataset(tmp_path / "b", model, 4, offset=6, mine=4)]


class TestGrpoJudge(TestSupervisedJudge):
    config_overrides = {"algo": "grpo", "group_size": 2, "max_new_tokens": 8, "rejection_cost": 1.0,
                        "kl_coef": 0.1}
    base_config = {**TrainerTests.base_config, "batch_size": 2}

    @pytest.mark.parametrize("scale", [True, False])
    def test_scale_rewards_reaches_the_advantages(self, datasets: list[Path], scale: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        import latentbench.train.advantages as advantages

        seen: list[tuple[torch.Tensor, bool, torch.Tensor]] = []
        real = advantages.grpo_advantages

        def spy(rewards: torch.Tensor, eps: float = 1e-4, scale: bool = True) -> torch.Tensor:
            seen.append((rewards, scale, out := real(rewards, eps, scale)))
            return out

        monkeypatch.setattr(advantages, "grpo_advantages", spy)
        trainer = self.make_trainer(scale_rewards=scale)
        data, module = self.build(trainer, datasets)
        trainer.loss(module, trainer.collate(data.rows("train")[:2], data))
        ((rewards, used, adv),) = seen
        assert used is scale and rewards.shape == (2, 2)
        if not scale:
            torch.testing.assert_close(adv, rewards - rewards.mean(dim=1, keepdim=True))


def test_threshold_zero_equals_judge_always_and_one_equals_none(tmp_path: Path) -> None:
    from latentbench.eval.evaluator import EvalRequest, evaluate
    from latentbench.train import run_training

    model = saved_tiny_model("qwen2", seed=1)
    data = spd_dataset(tmp_path / "traces", model, 6, mine=4)
    run_training(SpdJudgeTrainer(SpdJudgeConfig(max_steps=3, batch_size=4)), [data], tmp_path / "judge",
                 show_progress=False)
    runs = {}
    for name, args in {"always": {"judge": "always"}, "none": {"judge": "none"},
                       "t0": {"judge": "learned", "judge_path": str(tmp_path / "judge"), "threshold": 0.0},
                       "t1": {"judge": "learned", "judge_path": str(tmp_path / "judge"), "threshold": 1.0}}.items():
        record, _ = evaluate(EvalRequest(task="gsm8k", method="spd", limit=3, model=str(model),
                                         output_path=str(tmp_path / name), show_progress=False,
                                         method_args={"draft": "layers:1", "max_new_tokens": 12, **args}))
        samples = [json.loads(line) for f in (tmp_path / name).glob("samples-*.jsonl")
                   for line in f.read_text().splitlines()]
        runs[name] = (record["method_metrics"], [s["output"] for s in samples])
    assert runs["t0"][0]["acceptance_rate"] == runs["always"][0]["acceptance_rate"]
    assert runs["t0"][0]["judge_accept_share"] == runs["always"][0]["judge_accept_share"] == 1.0
    assert runs["t1"][0]["mean_accepted_length"] == runs["none"][0]["mean_accepted_length"]
    assert runs["t0"][1] == runs["always"][1] and runs["t1"][1] == runs["none"][1]
    assert "judge_accept_share" in runs["t0"][0] and "tokens_per_s" in runs["t0"][0]


def test_mined_labels_match_a_greedy_continuation_with_the_draft_token(tmp_path: Path, data_dir: Path) -> None:
    from latentbench.models import load_model
    from latentbench.store import open_dataset

    model = saved_tiny_model("qwen2", seed=1)
    ds = open_dataset(spd_dataset(tmp_path / "d", model, 2, mine=2))
    lm = load_model(str(model))
    mism, traces = ds.table("mismatches"), ds.table("traces")
    mined = mism.filter(mism["important"].is_not_null())
    assert mined.height == 4  # 2 per question
    row = mined.row(0, named=True)
    trace = traces.filter(traces["example_id"] == row["example_id"]).row(0, named=True)
    steps = ds.table("steps").filter(ds.table("steps")["example_id"] == row["example_id"])
    emitted = steps.filter(steps["position"] < row["position"]).sort("position")["emitted_token"].to_list()
    prompt = lm.tokenizer(trace["prompt"], add_special_tokens=False)["input_ids"]
    head = emitted + [row["draft_token"]]
    tail = target_only(lm, prompt + head, 12 - len(head))
    from latentbench.tasks import get_task

    task = get_task("gsm8k")
    text = lm.tokenizer.decode(head + tail, skip_special_tokens=True)
    ex = next(e for e in task.examples("train", limit=2, data_dir=data_dir) if e.id == row["example_id"])
    assert row["mined_prediction"] == task.score(ex, text).extracted[task.primary_variant]
    assert row["important"] == (row["mined_prediction"] != trace["prediction"])
    n_mismatches = mism.filter(mism["example_id"] == row["example_id"]).height
    assert ds.array("features", trace["features_ref"]).shape[0] == n_mismatches


def test_mining_a_code_task_is_refused() -> None:
    from latentbench.methods.base import make_method
    from latentbench.tasks import get_task

    method = make_method("spd", {"mine": 2})
    with pytest.raises(UsageError, match="--mine"):
        next(iter(method.run(tiny_model("qwen2"), get_task("humaneval"), [])))


def test_a_separate_draft_model_is_lossless_too(data_dir: Path) -> None:
    """--draft-model: another model of the same tokenizer drafts; standard SD still writes the target's text."""
    from latentbench.methods.base import make_method
    from latentbench.models import load_model
    from latentbench.tasks import get_task

    target = load_model(str(saved_tiny_model("qwen2", seed=1)))
    method = make_method("spd", {"draft_model": str(saved_tiny_model("llama", seed=0)), "max_new_tokens": 16,
                                 "gamma": 3})
    assert method.config.draft == "model"
    task = get_task("gsm8k")
    examples = task.examples("test", limit=3, data_dir=data_dir)
    outcomes = list(method.run(target, task, examples))
    for ex, outcome in zip(examples, outcomes, strict=True):
        prompt = target.tokenizer(outcome.prompt, add_special_tokens=False)["input_ids"]
        assert outcome.artifacts["trace"].tokens == target_only(target, prompt, 16), ex.id
    assert sum(len(o.artifacts["trace"].mismatches) for o in outcomes) > 0


def test_grpo_starts_from_the_supervised_judge(tmp_path: Path) -> None:
    from latentbench.train import run_training
    from latentbench.train.testing import metric_lines, saved_tensors

    data = [spd_dataset(tmp_path / "traces", saved_tiny_model("qwen2", seed=1), 4, mine=2)]
    run_training(SpdJudgeTrainer(SpdJudgeConfig(max_steps=2, batch_size=4, width=8)), data, tmp_path / "sup",
                 show_progress=False)
    grpo = SpdJudgeTrainer(SpdJudgeConfig(algo="grpo", init=str(tmp_path / "sup"), max_steps=1, batch_size=2,
                                          group_size=2, max_new_tokens=6, val_fraction=0.0, kl_coef=0.1))
    from latentbench.train.data import TrainData

    module = grpo.build(TrainData(data, "traces", val_fraction=0.0))
    start = saved_tensors(tmp_path / "sup")
    assert all(torch.equal(module.state_dict()[k], v) for k, v in start.items())  # width 8 taken from init
    run_training(grpo, data, tmp_path / "grpo", show_progress=False)
    [line] = metric_lines(tmp_path / "grpo", "train")
    assert {"reward", "correct", "kl", "mean_accepted_length"} <= set(line)
