"""latentbench.train: a toy value probe through the TrainerTests conformance base, plus the loop's
resume after an interruption, output-directory checks, the split, and the advantage rules."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from latentbench.config import ConfigError, build_config, option
from latentbench.errors import UsageError
from latentbench.store.reader import open_dataset
from latentbench.store.synthetic import INFO, make_synthetic_dataset
from latentbench.store.writer import DatasetWriter
from latentbench.train import (
    TrainConfig,
    TrainData,
    grpo_advantages,
    load_checkpoint,
    reinforce_advantages,
    run_training,
)
from latentbench.train.checkpoint import CHECKPOINTS, WEIGHTS
from latentbench.train.data import split_questions
from latentbench.train.testing import TrainerTests, metric_lines, saved_tensors

DIM = 8


# -- a toy trainer: predict a node's value from the mean of its latent vectors ------------------------
@dataclass
class ProbeConfig(TrainConfig):
    dropout: float = option(0.2, "dropout before the head (makes the RNG state matter on resume)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.dropout < 1:
            raise ConfigError("dropout", "must be in [0, 1)")


class ValueProbe(torch.nn.Module):
    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.base = torch.nn.Linear(DIM, DIM).requires_grad_(False)  # stands in for a frozen base model
        self.register_buffer("scale", torch.full((DIM,), 0.5))
        self.head = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(DIM, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, DIM]
        return self.head(torch.tanh(self.base(x) * self.scale)).squeeze(-1)


class ValueProbeTrainer:
    name = "value-probe"
    config_class = ProbeConfig
    table = "nodes"

    def __init__(self, config: ProbeConfig) -> None:
        self.config = config

    def build(self, data: TrainData) -> torch.nn.Module:
        return ValueProbe(self.config.dropout)

    def collate(self, rows: list[dict[str, Any]], data: TrainData) -> dict[str, torch.Tensor]:
        x = torch.stack([data.array(r, "latent_ref").float().mean(0) for r in rows])  # [batch, DIM]
        return {"x": x, "y": torch.tensor([r["value"] for r in rows], dtype=torch.float32)}

    def loss(self, module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        pred = module(batch["x"])
        return torch.nn.functional.mse_loss(pred, batch["y"]), {"mae": (pred - batch["y"]).abs().mean().item()}

    def base_model_sha256(self) -> str:
        return "cd" * 32


def write_probe_dataset(path: Path, questions: range, seed: int = 0) -> Path:
    """A latent-tree dataset of 3-node trees with finite latents and values learnable from them."""
    w = DatasetWriter(path, kind="latent-tree", info=INFO, chunk_elements=64)
    for q in questions:
        rng = np.random.default_rng([seed, q])
        with w.example(f"probe/test/{q}") as ex:
            nodes = []
            for node, parent in enumerate([None, 0, 0]):
                latent = rng.normal(size=(2, DIM)).astype(np.float32)
                value = round(float(1 / (1 + np.exp(-latent.mean(0)[:4].sum()))), 6)
                nodes.append({"node_id": node, "parent_id": parent, "agent_index": 0, "depth": int(node > 0),
                              "branch_index": max(node - 1, 0), "role": "planner", "n_leaves": 1, "n_correct": 0,
                              "value": value, "label": value > 0.5, "latent_ref": ex.add_array("latent", latent)})
            ex.add_rows("nodes", nodes)
            ex.add_rows("trees", [{"question_id": str(q), "gold": "0", "config": "{}", "n_nodes": 3,
                                   "n_leaves": 2, "n_correct": 0}])
    w.finalize()
    return path


class TestValueProbeTrainer(TrainerTests):
    trainer_class = ValueProbeTrainer
    config_overrides = {"learning_rate": 1e-2}

    def make_datasets(self, tmp_path: Path) -> list[Path]:
        return [write_probe_dataset(tmp_path / "a", range(5)), write_probe_dataset(tmp_path / "b", range(3, 7), 1)]


class LeafCountTrainer:
    """Reads table columns only, so the shipped default (synthetic datasets) serves its conformance tests."""

    name = "leaf-count"
    config_class = TrainConfig
    table = "nodes"

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def build(self, data: TrainData) -> torch.nn.Module:
        return torch.nn.Linear(2, 1)

    def collate(self, rows: list[dict[str, Any]], data: TrainData) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.tensor([[r["consistency"], r["depth"]] for r in rows], dtype=torch.float32)
        return x, torch.tensor([float(r["n_leaves"]) for r in rows])

    def loss(self, module: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return torch.nn.functional.mse_loss(module(batch[0]).squeeze(-1), batch[1]), {}


class TestLeafCountTrainer(TrainerTests):
    trainer_class = LeafCountTrainer


@pytest.fixture(scope="module")
def probe_data(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return TestValueProbeTrainer().make_datasets(tmp_path_factory.mktemp("probe"))


def probe(**kw: Any) -> ValueProbeTrainer:
    return ValueProbeTrainer(ProbeConfig(**{"max_steps": 4, "save_every": 2, "eval_every": 2, "batch_size": 4,
                                            "val_fraction": 0.3, **kw}))


# -- interruption and resume --------------------------------------------------------------------------
class InterruptedOnce(ValueProbeTrainer):
    """Raises KeyboardInterrupt in the loss of training step ``at`` (Ctrl-C mid-step), once."""

    def __init__(self, config: ProbeConfig, at: int) -> None:
        super().__init__(config)
        self.at, self.train_calls = at, 0

    def loss(self, module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        if module.training:
            self.train_calls += 1
            if self.train_calls == self.at:
                raise KeyboardInterrupt
        return super().loss(module, batch)


def test_resume_after_interrupt_equals_uninterrupted_run(probe_data: list[Path], tmp_path: Path) -> None:
    run_training(probe(max_steps=6), probe_data, tmp_path / "whole", show_progress=False)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run_training(InterruptedOnce(probe(max_steps=6).config, at=3), probe_data, out, show_progress=False)
    assert [p.name for p in (out / CHECKPOINTS).iterdir()] == ["step-000002"]
    assert max(line["step"] for line in metric_lines(out, "train")) == 2  # step 3 never logged
    result = run_training(probe(max_steps=6), probe_data, out, show_progress=False)
    assert result.steps == 6 and result.val
    for split in ("train", "val"):
        assert metric_lines(out, split) == metric_lines(tmp_path / "whole", split), split
    ours, theirs = saved_tensors(out), saved_tensors(tmp_path / "whole")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert sorted(p.name for p in (out / CHECKPOINTS).iterdir()) == ["step-000004", "step-000006"]  # last 2


def test_loss_is_logged_and_decreases(probe_data: list[Path], tmp_path: Path) -> None:
    result = run_training(probe(max_steps=30, eval_every=10, save_every=30, dropout=0.0, learning_rate=0.05),
                          probe_data, tmp_path / "out", show_progress=False)
    train = metric_lines(tmp_path / "out", "train")
    assert [line["step"] for line in train] == list(range(1, 31))
    assert {"loss", "mae", "grad_norm"} <= set(train[0])
    assert [line["step"] for line in metric_lines(tmp_path / "out", "val")] == [10, 20, 30]
    assert result.train_loss == train[-1]["loss"] and np.mean([x["loss"] for x in train[-5:]]) < train[0]["loss"]


# -- the output directory -----------------------------------------------------------------------------
def test_output_dir_checks(probe_data: list[Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    run_training(probe(max_steps=2), probe_data, out, show_progress=False)
    with caplog.at_level(logging.WARNING):
        assert run_training(probe(max_steps=2), probe_data, out, show_progress=False).steps == 2
    assert "already holds a finished value-probe run" in caplog.text
    with pytest.raises(UsageError, match=rf"^{out}: .*learning_rate=0\.001 there, 0\.5 here") as err:
        run_training(probe(max_steps=2, learning_rate=0.5), probe_data, out, show_progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="trained for 2 steps, more than max_steps=1"):
        run_training(probe(max_steps=1), probe_data, out, show_progress=False)
    with pytest.raises(UsageError, match="trained on other datasets"):
        run_training(probe(max_steps=2), probe_data[::-1], out, show_progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds no training run"):
        run_training(probe(), probe_data, tmp_path / "other", show_progress=False)


def test_load_checkpoint_refuses_a_module_it_does_not_fit(probe_data: list[Path], tmp_path: Path) -> None:
    run_training(probe(max_steps=1), probe_data, tmp_path / "out", show_progress=False)
    with pytest.raises(UsageError, match=rf"{WEIGHTS}: does not fit the module; unexpected tensors head.1.bias"):
        load_checkpoint(tmp_path / "out", torch.nn.Sequential(torch.nn.Linear(DIM, 1)))
    with pytest.raises(UsageError, match="expected the output of a finished training run"):
        load_checkpoint(tmp_path, ValueProbe(0.0))


# -- data ---------------------------------------------------------------------------------------------
def test_split_is_stable_and_rows_resolve_to_their_dataset(probe_data: list[Path]) -> None:
    data = TrainData(probe_data, "nodes", val_fraction=0.3)
    swapped = TrainData(probe_data[::-1], "nodes", val_fraction=0.3)
    assert data.question_ids("val") == swapped.question_ids("val") and data.question_ids("val")
    assert len(data.question_ids("train")) + len(data.question_ids("val")) == 7  # probe/test/0..6
    rows = data.rows("train") + data.rows("val")
    assert {r["_dataset"] for r in rows} == {0, 1}
    for row in rows[::4]:
        want = open_dataset(probe_data[row["_dataset"]]).array("latent", row["latent_ref"], torch=True)
        assert torch.equal(data.array(row, "latent_ref"), want)
    limited = TrainData(probe_data, "nodes", val_fraction=0.3, limit=3)
    assert sorted(limited.question_ids("train") + limited.question_ids("val")) == [f"probe/test/{i}" for i in range(3)]


def test_split_questions_keeps_both_sides_filled() -> None:
    ids = [f"q{i}" for i in range(10)]
    assert split_questions(ids, 0.0) == (ids, [])
    train, val = split_questions(ids, 1e-9)
    assert len(val) == 1 and len(train) == 9
    train, val = split_questions(ids, 0.999999)
    assert len(train) == 1 and len(val) == 9
    assert split_questions(["only"], 0.5) in ((["only"], []), ([], ["only"]))
    assert split_questions(ids[::-1], 0.3) == split_questions(ids, 0.3)


def test_missing_dataset_or_table_is_a_one_line_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"nowhere/at-all: no such dataset \(expected a dataset directory"):
        TrainData([tmp_path / "nowhere" / "at-all"], "nodes")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"empty: no manifest.json \(expected a dataset directory"):
        TrainData([tmp_path / "empty"], "nodes")
    make_synthetic_dataset(tmp_path / "spd", "spd-trace", n=1)
    with pytest.raises(UsageError, match=r"spd: dataset of kind spd-trace has no table 'nodes' to train on"):
        TrainData([tmp_path / "spd"], "nodes")


# -- config -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value"), [("max_steps", 0), ("batch_size", 0), ("learning_rate", 0.0),
                                              ("grad_clip", 0.0), ("val_fraction", 1.0), ("limit", 0),
                                              ("eval_every", 0), ("seed", -1), ("dropout", 1.0),
                                              ("device", "cuda:1")])
def test_config_checks_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as err:
        ProbeConfig(**{field: value})
    assert err.value.field == field
    with pytest.raises(UsageError, match=f"^--{field.replace('_', '-')}: "):
        build_config(ProbeConfig, {field: str(value)}, {field: f"--{field.replace('_', '-')}"})


def test_config_module_imports_no_torch() -> None:
    code = "import sys, latentbench.train, latentbench.train.config; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


# -- advantages ---------------------------------------------------------------------------------------
def test_grpo_advantages() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 3.0]])
    adv = grpo_advantages(rewards, eps=1e-8)
    std = (1 / 3) ** 0.5  # unbiased std of 1, 0, 0, 1: sqrt(4 * 0.25 / 3)
    torch.testing.assert_close(adv[0], torch.tensor([0.5, -0.5, -0.5, 0.5]) / std)
    assert torch.equal(adv[1], torch.zeros(4))
    torch.testing.assert_close(adv[2], (rewards[2] - 0.75) / (rewards[2].std() + 1e-8))
    torch.testing.assert_close(adv.mean(dim=1), torch.zeros(3), atol=1e-6, rtol=0)
    assert torch.equal(grpo_advantages(torch.tensor([[1.0], [0.0]])), torch.zeros(2, 1))
    costs_only = torch.tensor([[-0.02, -0.03, -0.02, -0.05]])  # all wrong: rewards differ by the cost alone
    torch.testing.assert_close(grpo_advantages(costs_only, scale=False), costs_only - costs_only.mean())
    assert grpo_advantages(costs_only).abs().max() > 0.5  # scaled, the same small costs look decisive
    with pytest.raises(ValueError, match="groups, samples"):
        grpo_advantages(torch.ones(4))


def test_reinforce_advantages_use_the_baseline_from_before_the_batch() -> None:
    adv, baseline = reinforce_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0]), baseline=0.0, momentum=0.9)
    assert torch.equal(adv, torch.tensor([1.0, 0.0, 1.0, 1.0])) and baseline == pytest.approx(0.075)
    adv, baseline2 = reinforce_advantages(torch.tensor([1.0, 0.0]), baseline=baseline, momentum=0.9)
    torch.testing.assert_close(adv, torch.tensor([1 - 0.075, -0.075]))
    assert baseline2 == pytest.approx(0.9 * 0.075 + 0.1 * 0.5)
    with pytest.raises(ValueError, match="momentum"):
        reinforce_advantages(torch.ones(2), 0.0, momentum=1.5)


def test_train_result_matches_metrics(probe_data: list[Path], tmp_path: Path) -> None:
    result = run_training(probe(max_steps=2), probe_data, tmp_path / "out", show_progress=False)
    val = metric_lines(tmp_path / "out", "val")[-1]
    assert result.val == {k: v for k, v in val.items() if k not in ("step", "split")}
    assert json.loads((tmp_path / "out" / "provenance.json").read_text())["base_model_sha256"] == "cd" * 32


# -- the command line ----------------------------------------------------------------------------------
def test_train_command_dispatches_to_a_registered_trainer(probe_data: list[Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    import json
    import sys

    from latentbench import methods
    from latentbench.cli import main

    monkeypatch.setitem(methods.TRAINERS, "value-probe", f"{__name__}:ValueProbeTrainer")

    def cli(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["latentbench", "train", *args])
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        return code, out + err

    out = tmp_path / "ckpt"
    code, text = cli("value-probe", *map(str, probe_data), "--max-steps", "3", "--output", str(out),
                     "--learning-rate", "0.05", "--seed", "4", "--dropout", "0.1")
    assert code == 0, text
    saved = json.loads((out / "config.json").read_text())
    assert saved["trainer"] == "value-probe"
    assert {k: saved["config"][k] for k in ("max_steps", "learning_rate", "seed", "dropout")} == \
           {"max_steps": 3, "learning_rate": 0.05, "seed": 4, "dropout": 0.1}
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["split"] == "train"]
    assert steps == [1, 2, 3] and "step 3" in text
    code, text = cli("value-probe", str(probe_data[0]), "--output", str(tmp_path / "x"), "--dropout", "1.5")
    assert code == 2 and "error: --dropout: must be in [0, 1)" in text and "Traceback" not in text
    code, text = cli("nonesuch", str(probe_data[0]), "--output", str(tmp_path / "y"))
    assert code == 2 and "train 'nonesuch': no such trainer" in text
