"""Conformance tests every trainer inherits, like ``DatasetKindTests`` and ``MethodTests``.

    class TestPrmTrainer(TrainerTests):
        trainer_class = PrmTrainer
        config_overrides = {"hidden": 8}      # tiny
        # optional: def make_datasets(self, tmp_path) -> list[Path]   (default: synthetic datasets)

Checks: one optimizer step changes every trainable parameter and no frozen parameter or buffer (but
the ``state_buffers`` a step updates as running state); the
exported checkpoint loads into a freshly built module with identical tensors and validation loss; a
run stopped after 2 steps and continued to 4 logs the same losses as one run to 4; train and
validation share no question; provenance.json names every dataset's manifest hash; a finished run is
not redone. The default datasets are the store's synthetic ones, whose float arrays hold random bit
patterns (NaN included): a trainer that reads arrays overrides ``make_datasets`` with sane values.
Needs pytest (a dev dependency); import it from tests only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from accelerate.utils import set_seed

from latentbench.config import config_dict
from latentbench.provenance import sha256_file
from latentbench.train.checkpoint import CONFIG, PROVENANCE, WEIGHTS, load_checkpoint
from latentbench.train.data import TrainData
from latentbench.train.loop import Trainer, evaluate, open_train_data, run_training
from latentbench.train.run_dir import METRICS


def metric_lines(out: Path, split: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (out / METRICS).read_text().splitlines()]
    return [line for line in lines if line["split"] == split]


def saved_tensors(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / WEIGHTS))


class TrainerTests:
    trainer_class: ClassVar[type[Any]]
    config_overrides: ClassVar[dict[str, Any]] = {}  # tiny settings for a fast run
    base_config: ClassVar[dict[str, Any]] = {"max_steps": 4, "save_every": 2, "eval_every": 2,
                                             "batch_size": 4, "val_fraction": 0.3}
    n_examples: ClassVar[int] = 6
    unused_parameters: ClassVar[tuple[str, ...]] = ()  # trainable names one step may leave unchanged
    state_buffers: ClassVar[tuple[str, ...]] = ()  # buffers a step updates as running state (a moving baseline)

    def make_datasets(self, tmp_path: Path) -> list[Path]:
        """Two synthetic datasets of the kind that defines the trainer's table."""
        from latentbench.store.schema import available_kinds, load_kind
        from latentbench.store.synthetic import make_synthetic_dataset

        kind = next(k for k in available_kinds() if self.trainer_class.table in load_kind(k).tables)
        paths = [tmp_path / "a", tmp_path / "b"]
        for n, path in zip((self.n_examples, self.n_examples // 2 + 1), paths, strict=True):
            make_synthetic_dataset(path, kind, n=n)
        return paths

    def expected_source_hashes(self, datasets: list[Path]) -> set[str]:
        """What provenance must name: each dataset's manifest sha256 (a trainer with its own source overrides)."""
        return {sha256_file(Path(p) / "manifest.json") for p in datasets}

    def make_trainer(self, **overrides: Any) -> Trainer:
        cls = self.trainer_class
        return cls(cls.config_class(**{**self.base_config, **self.config_overrides, **overrides}))

    def build(self, trainer: Trainer, datasets: list[Path]) -> tuple[TrainData, torch.nn.Module]:
        """Data and module as ``run_training`` makes them (same seed, so the same frozen parts)."""
        config = trainer.config
        set_seed(config.seed)
        data = open_train_data(trainer, datasets)
        return data, trainer.build(data)

    @pytest.fixture(scope="class")
    @classmethod
    def datasets(cls, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
        return cls().make_datasets(tmp_path_factory.mktemp("train-datasets"))

    @pytest.fixture(scope="class")
    @classmethod
    def trained(cls, datasets: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
        """One uninterrupted run to step 4 with a resume point every 2 steps."""
        out = tmp_path_factory.mktemp("trained") / "out"
        run_training(cls().make_trainer(max_steps=4, save_every=2), datasets, out, show_progress=False)
        return out

    # -- tests -------------------------------------------------------------------------------------
    def test_one_step_trains_only_trainable_parameters(self, datasets: list[Path]) -> None:
        trainer = self.make_trainer()
        data, module = self.build(trainer, datasets)
        module.train()
        params = dict(module.named_parameters(remove_duplicate=False))
        before = {k: v.detach().clone() for k, v in [*params.items(), *module.named_buffers()]}
        trainable = [p for p in module.parameters() if p.requires_grad]
        assert trainable, "the module has no trainable parameters"
        optimizer = torch.optim.AdamW(trainable, lr=trainer.config.learning_rate)
        loss, metrics = trainer.loss(module, trainer.collate(data.rows("train")[: trainer.config.batch_size], data))
        assert loss.dim() == 0 and torch.isfinite(loss), (
            f"loss {loss} is not a finite scalar (NaN inputs? override make_datasets with well-behaved data)")
        assert all(isinstance(v, float) for v in metrics.values()), metrics
        loss.backward()
        optimizer.step()
        after = {**dict(module.named_parameters(remove_duplicate=False)), **dict(module.named_buffers())}
        for name, old in before.items():
            changed = not torch.equal(old, after[name].detach())
            if name in params and params[name].requires_grad:
                assert changed or any(u in name for u in self.unused_parameters), f"trainable {name} did not change"
            elif name not in self.state_buffers:
                assert not changed, f"frozen parameter or buffer {name} changed"

    def test_checkpoint_round_trip(self, datasets: list[Path], trained: Path) -> None:
        trainer = self.make_trainer(max_steps=4, save_every=2)
        data, module = self.build(trainer, datasets)
        record = load_checkpoint(trained, module)
        assert record == {"trainer": trainer.name, "config": config_dict(trainer.config)}
        assert json.loads((trained / CONFIG).read_text()) == record
        state = module.state_dict()
        for name, tensor in saved_tensors(trained).items():
            assert torch.equal(state[name], tensor), name
        if data.rows("val"):
            val = evaluate(trainer, module, data, trainer.config.batch_size)
            assert val["loss"] == pytest.approx(metric_lines(trained, "val")[-1]["loss"], rel=1e-6, abs=1e-9)

    def test_stop_and_resume_equals_one_run(self, datasets: list[Path], trained: Path, tmp_path: Path) -> None:
        out = tmp_path / "resumed"
        first = run_training(self.make_trainer(max_steps=2, save_every=2), datasets, out, show_progress=False)
        assert first.steps == 2
        result = run_training(self.make_trainer(max_steps=4, save_every=2), datasets, out, show_progress=False)
        assert result.steps == 4
        assert metric_lines(out, "train") == metric_lines(trained, "train")
        ours, theirs = saved_tensors(out), saved_tensors(trained)
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)

    def test_split_shares_no_question(self, datasets: list[Path]) -> None:
        data = open_train_data(self.make_trainer(limit=None), datasets)
        train, val = set(data.question_ids("train")), set(data.question_ids("val"))
        assert train and val and not train & val
        # every row on its question's side (a trainer's keep_row may drop a question's rows)
        assert data.rows("train") and {r["example_id"] for r in data.rows("train")} <= train
        assert {r["example_id"] for r in data.rows("val")} <= val

    def test_provenance_names_every_dataset(self, datasets: list[Path], trained: Path) -> None:
        prov = json.loads((trained / PROVENANCE).read_text())
        hashes = {d["manifest_sha256"] for d in prov["datasets"]}
        assert hashes == self.expected_source_hashes(datasets)
        assert prov["steps"] == 4 and prov["packages"] and prov["created"]

    def test_finished_run_is_not_redone(self, datasets: list[Path], trained: Path) -> None:
        before = {p: p.stat().st_mtime_ns for p in trained.rglob("*") if p.is_file()}
        result = run_training(self.make_trainer(max_steps=4, save_every=2), datasets, trained, show_progress=False)
        assert result.steps == 4 and result.train_loss == metric_lines(trained, "train")[-1]["loss"]
        assert {p: p.stat().st_mtime_ns for p in trained.rglob("*") if p.is_file()} == before
