"""Latent-PRM: the three heads through TrainerTests, learning a known labelling, and generator checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import saved_tiny_model

from latentbench.errors import UsageError
from latentbench.methods.latent_tree.prm import Generator, PrmConfig, PrmTrainer, load_prm, node_metrics
from latentbench.store.synthetic import INFO
from latentbench.store.writer import DatasetWriter
from latentbench.train import run_training
from latentbench.train.testing import TrainerTests, metric_lines

HIDDEN, STEPS, LEAVES = 32, 2, 4
LAYERS, KV_HEADS, HEAD_DIM = 2, 2, 16  # tiny_model("qwen2") KV shapes


def write_trees(path: Path, questions: range, seed: int = 0, model: dict | None = None) -> Path:
    """Trees root -> 2 children -> 2 grandchildren whose values are a known function of the path's
    latent states: the share of correct leaves is high where the states' first coordinates sum high."""
    w = DatasetWriter(path, kind="latent-tree", info={**INFO, "model": model or INFO["model"]}, chunk_elements=256,
                      extra_kinds=["kv-shard"])
    for q in questions:
        rng = np.random.default_rng([seed, q])
        with w.example(f"gsm8k/train/{q}") as ex:
            rows, score = [], {0: 0.0}
            for node, parent in enumerate([None, 0, 0, 1, 1, 2, 2]):
                depth = 0 if parent is None else (1 if parent == 0 else 2)
                hidden = rng.normal(size=(STEPS, HIDDEN)).astype(np.float32)
                kv = rng.normal(size=(2, LAYERS, KV_HEADS, 3 if depth == 0 else STEPS, HEAD_DIM)).astype(np.float32)
                score[node] = score[parent] + float(hidden[:, :4].sum()) if parent is not None else 0.0
                correct = int(round(LEAVES / (1 + np.exp(-2 * score[node]))))
                rows.append({"node_id": node, "parent_id": parent, "agent_index": max(depth - 1, 0), "depth": depth,
                             "branch_index": (node - 1) % 2 if node else 0, "role": "planner",
                             "n_leaves": LEAVES, "n_correct": correct, "value": correct / LEAVES, "label": correct > 0,
                             "kept": True if depth == 2 else None,
                             "hidden_ref": ex.add_array("hidden", hidden) if depth else None,
                             "latent_ref": ex.add_array("latent", hidden) if depth else None,
                             "kv_ref": ex.add_array("kv", kv, owner=f"nodes:{node}")})
            ex.add_rows("nodes", rows)
            ex.add_rows("trees", [{"question_id": str(q), "gold": "0", "config": "{}", "n_nodes": 7, "n_leaves": 4,
                                   "n_correct": 0}])
    w.finalize()
    return path


class PrmTests(TrainerTests):
    trainer_class = PrmTrainer

    def make_datasets(self, tmp_path: Path) -> list[Path]:
        return [write_trees(tmp_path / "a", range(6)), write_trees(tmp_path / "b", range(6, 10), seed=1)]


class TestMlpHead(PrmTests):
    config_overrides = {"head": "mlp", "width": 16, "learning_rate": 1e-2}


class TestBackboneHead(PrmTests):
    @property
    def config_overrides(self) -> dict[str, Any]:  # type: ignore[override]
        return {"head": "backbone", "backbone": str(_backbone()), "learning_rate": 1e-2}


class TestKvHeadWithLora(PrmTests):
    unused_parameters = ("lora_A",)  # LoRA's B starts at 0, so A gets no gradient on the first step

    @property
    def config_overrides(self) -> dict[str, Any]:  # type: ignore[override]
        return {"head": "kv", "backbone": str(_backbone()), "lora": True, "lora_rank": 2, "learning_rate": 1e-2}


def _backbone() -> Path:
    return saved_tiny_model("qwen2", seed=1)


def test_mlp_head_learns_a_known_labelling(tmp_path: Path) -> None:
    data = [write_trees(tmp_path / "train", range(60))]
    trainer = PrmTrainer(PrmConfig(head="mlp", width=64, max_steps=300, batch_size=32, learning_rate=3e-3,
                                   eval_every=100, save_every=300, val_fraction=0.25))
    run_training(trainer, data, tmp_path / "prm", show_progress=False)
    val = metric_lines(tmp_path / "prm", "val")[-1]
    assert val["auroc"] > 0.9, val
    assert val["corr_depth2"] > 0.6 and val["brier"] < 0.1, val
    train = metric_lines(tmp_path / "prm", "train")
    assert np.mean([line["loss"] for line in train[-20:]]) < np.mean([line["loss"] for line in train[:20]])


def test_rows_without_decoded_leaves_and_roots_are_left_out() -> None:
    assert not PrmTrainer.keep_row({"depth": 0, "n_leaves": 4, "value": 0.5})
    assert not PrmTrainer.keep_row({"depth": 2, "n_leaves": 0, "value": None})
    assert PrmTrainer.keep_row({"depth": 1, "n_leaves": 1, "value": 0.0})


def test_node_metrics_by_hand() -> None:
    rows = [{"n_correct": c, "value": v, "depth": 1, "example_id": "q", "parent_id": 0}
            for c, v in [(0, 0.0), (1, 0.25), (3, 0.75), (4, 1.0)]]
    probs = np.array([0.1, 0.4, 0.3, 0.9])
    out = node_metrics(probs, rows)
    assert out["auroc"] == pytest.approx(1.0)  # the one negative scores below every positive
    assert out["sibling_auroc"] == pytest.approx(5 / 6)  # of the 6 sibling pairs only (0.25, 0.75) is misordered
    assert out["brier"] == pytest.approx(np.mean((probs - [0, 0.25, 0.75, 1.0]) ** 2))
    assert out["corr_depth1"] == pytest.approx(np.corrcoef(probs, [0, 0.25, 0.75, 1.0])[0, 1])


def test_kv_head_refuses_a_backbone_of_other_shapes(tmp_path: Path) -> None:
    other = saved_tiny_model("qwen2", seed=0, hidden_size=128)
    trainer = PrmTrainer(PrmConfig(head="kv", backbone=str(other), max_steps=1))
    with pytest.raises(UsageError, match=r"\(2, 2, 16\).*\(2, 2, 32\)"):
        run_training(trainer, [write_trees(tmp_path / "d", range(4))], tmp_path / "out", show_progress=False)


def test_datasets_of_two_generators_are_refused(tmp_path: Path) -> None:
    a = write_trees(tmp_path / "a", range(3))
    b = write_trees(tmp_path / "b", range(3, 6), model={"id": "other", "sha256": "cd" * 32})
    with pytest.raises(UsageError, match="different generators"):
        run_training(PrmTrainer(PrmConfig(max_steps=1)), [a, b], tmp_path / "out", show_progress=False)


def test_a_prm_loads_for_its_generator_and_is_refused_for_another(tmp_path: Path) -> None:
    out = tmp_path / "prm"
    run_training(PrmTrainer(PrmConfig(head="mlp", width=8, max_steps=2)), [write_trees(tmp_path / "d", range(6))],
                 out, show_progress=False)
    assert json.loads((out / "provenance.json").read_text())["base_model_sha256"] == INFO["model"]["sha256"]
    generator = Generator("tiny", INFO["model"]["sha256"], HIDDEN)
    module, config = load_prm(out, generator)
    assert config.head == "mlp" and module(
        {"states": torch.zeros(1, 2, HIDDEN), "mask": torch.ones(1, 2, dtype=torch.long)}).shape == (1,)
    with pytest.raises(UsageError, match="trained on the outputs of model weights abababababab"):
        load_prm(out, Generator("tiny", "ef" * 32, HIDDEN))


def test_train_prm_from_the_command_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = write_trees(tmp_path / "d", range(6))
    cmd = [sys.executable, "-m", "latentbench", "train", "prm", str(data), "--head", "mlp", "--width", "8",
           "--max-steps", "3", "--output", str(tmp_path / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "step 3" in done.stdout and (tmp_path / "out" / "model.safetensors").is_file()
    info = subprocess.run([sys.executable, "-m", "latentbench", "info", str(tmp_path / "out")], capture_output=True,
                          text=True)
    assert info.returncode == 0, info.stderr
    assert "prm" in info.stdout and INFO["model"]["sha256"] in info.stdout and str(data.resolve()) in info.stdout


# -- PRM-guided search on a tiny generator -----------------------------------------------------------------
TREE = {"agents": 2, "branches": 2, "latent_steps": 2, "keep": "all", "max_new_tokens": 3}


@pytest.fixture(scope="module")
def generator_trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny generator saved to disk (so it has a weights sha256) and a latent-tree dataset it made."""
    from latentbench.generate import GenerateRequest, generate

    model = saved_tiny_model("qwen2", seed=2)
    data = generate(GenerateRequest(task="gsm8k", limit=4, model=str(model),
                                    output=str(tmp_path_factory.mktemp("generator") / "trees"),
                                    method_args=TREE, show_progress=False))
    return model, data


@pytest.mark.parametrize("head", ["mlp", "kv"])
def test_prm_guided_beam_search_runs_end_to_end(generator_trees, tmp_path: Path, head: str) -> None:
    from latentbench.eval.evaluator import EvalRequest, evaluate
    from latentbench.store import open_dataset

    model, trees = generator_trees
    overrides = {"backbone": str(model)} if head == "kv" else {"width": 8}
    run_training(PrmTrainer(PrmConfig(head=head, max_steps=2, batch_size=4, **overrides)), [trees], tmp_path / "prm",
                 show_progress=False)
    args = {**TREE, "prm": str(tmp_path / "prm"), "beam": 1, "select": "prm"}
    record, path = evaluate(EvalRequest(task="gsm8k", method="latent-tree", limit=2, model=str(model),
                                        output_path=str(tmp_path / "eval"), method_args=args, show_progress=False))
    assert record["task"]["n"] == 2 and 0 <= record["method_metrics"]["prm_score"] <= 1
    rows = [json.loads(line) for line in (path.parent / record["samples_file"]).read_text().splitlines()]
    assert all(0 <= r["metrics"]["prm_score"] <= 1 for r in rows)

    from latentbench.generate import GenerateRequest, generate

    out = generate(GenerateRequest(task="gsm8k", limit=1, model=str(model), output=str(tmp_path / "beam"),
                                   method_args=args, show_progress=False))
    nodes = open_dataset(out).table("nodes")
    assert nodes.height == 1 + 2 + 2  # beam 1: one survivor per level expands
    assert nodes.filter(nodes["depth"] > 0)["prm_score"].is_not_null().all()
    assert nodes["kept"].fill_null(False).sum() == 1


def test_select_rules_pick_the_right_leaf() -> None:
    from latentbench.methods.latent_tree.method import select_leaf
    from latentbench.methods.latent_tree.tree import TreeNode

    def leaf(i: int, prediction: str, correct: bool, prm: float) -> TreeNode:
        return TreeNode(i, 0, 1, i, 0, "planner", torch.zeros(1), torch.zeros(1), prediction=prediction,
                        correct=correct, prm_score=prm)

    decoded = [leaf(1, "5", False, 0.2), leaf(2, "7", True, 0.9), leaf(3, "5", False, 0.1)]  # most consistent first
    assert select_leaf(decoded, "majority").node_id == 1
    assert select_leaf(decoded, "consistency").node_id == 1
    assert select_leaf(decoded, "prm").node_id == 2
    assert select_leaf(decoded, "oracle").node_id == 2
    assert select_leaf([decoded[0], decoded[2]], "oracle").node_id == 1  # no correct leaf: the majority pick


def test_beam_or_prm_selection_without_a_prm_is_refused() -> None:
    from latentbench.config import ConfigError
    from latentbench.methods.latent_tree.config import LatentTreeConfig

    with pytest.raises(ConfigError, match="beam"):
        LatentTreeConfig(beam=2)
    with pytest.raises(ConfigError, match="select=prm"):
        LatentTreeConfig(select="prm")


# -- selection rules scored offline on saved trees ---------------------------------------------------------
def test_offline_selection_picks_what_eval_picks(generator_trees, tmp_path: Path) -> None:
    """`latentbench select` on a generated dataset gives each question the leaf `eval --select R` chooses
    on the same questions: the PRM's pick has the PRM score eval reports, majority's correctness is the
    tree's at generation (select=majority), and no rule beats the oracle."""
    from latentbench.eval.evaluator import EvalRequest, evaluate
    from latentbench.methods.latent_tree.selection import prm_scores, score_rules
    from latentbench.store import open_dataset

    model, trees = generator_trees
    prm = tmp_path / "prm"
    run_training(PrmTrainer(PrmConfig(head="mlp", width=8, max_steps=3, batch_size=4)), [trees], prm,
                 show_progress=False)
    results = {r.rule: r for r in score_rules([trees], [prm])}
    assert set(results) == {"majority", "consistency", f"prm:{prm}", "oracle"}
    assert all(len(r.correct) == 4 for r in results.values())
    assert 0 <= results[f"prm:{prm}"].leaf_metrics["brier"] <= 1  # the PRM row is scored on the leaves too
    assert not results["majority"].leaf_metrics

    tree_rows = open_dataset(trees).table("trees").sort("example_id").to_dicts()
    assert results["majority"].correct == [bool(r["correct"]) for r in tree_rows]
    assert all(a <= o for r in results.values() for a, o in zip(r.correct, results["oracle"].correct, strict=True))

    offline = results[f"prm:{prm}"]
    record, path = evaluate(EvalRequest(task="gsm8k", method="latent-tree", limit=4, model=str(model),
                                        output_path=str(tmp_path / "eval"), show_progress=False,
                                        method_args={**TREE, "prm": str(prm), "select": "prm"}))
    samples = [json.loads(line) for line in (path.parent / record["samples_file"]).read_text().splitlines()]
    scores = prm_scores(prm, [trees])
    assert len(samples) == 4
    for sample in samples:
        key = f"0/{sample['id']}"
        assert sample["metrics"]["prm_score"] == pytest.approx(scores[(key, offline.picks[key])], abs=1e-5)
        assert max(s for (k, _), s in scores.items() if k == key) == scores[(key, offline.picks[key])]


def test_select_from_the_command_line(generator_trees, tmp_path: Path) -> None:
    import subprocess
    import sys

    _, trees = generator_trees
    out = tmp_path / "rules.json"
    done = subprocess.run([sys.executable, "-m", "latentbench", "select", str(trees), "-o", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["rule"] for r in rows] == ["majority", "consistency", "oracle"]  # no --prm: no prm row
    assert all(r["n"] == 4 and r["interval_95"][0] <= r["accuracy"] <= r["interval_95"][1] for r in rows)
    assert "majority" in done.stdout and "[" in done.stdout
    for args, message in ([["--rules", "best"]], "unknown best"), ([["--rules", "prm"]], "needs at least one --prm"):
        bad = subprocess.run([sys.executable, "-m", "latentbench", "select", str(trees), *args[0]],
                             capture_output=True, text=True)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
