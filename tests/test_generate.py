"""`latentbench generate` end to end on a tiny model: a valid dataset, exact replay, kill-and-resume, shards."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import saved_tiny_model

from latentbench.generate import GenerateRequest, generate, shard
from latentbench.methods.latent_tree.record import replay
from latentbench.store import open_dataset
from latentbench.store.journal import _SUFFIX as JOURNAL_SUFFIX

SMALL = {"agents": 2, "branches": 2, "latent_steps": 2, "keep": 3, "max_new_tokens": 6}
SMALL_FLAGS = ["--agents", "2", "--branches", "2", "--latent-steps", "2", "--keep", "3", "--max-new-tokens", "6"]


@pytest.fixture(scope="module")
def tiny_dir() -> Path:
    return saved_tiny_model("llama", seed=3)


@pytest.fixture(scope="module")
def dataset(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "gsm8k-latent-tree"
    return generate(GenerateRequest(task="gsm8k", limit=2, model=str(tiny_dir), output=str(out),
                                    method_args=SMALL, show_progress=False))


def test_dataset_validates_and_loads_with_plain_datasets(dataset: Path) -> None:
    import datasets

    ds = open_dataset(dataset)
    assert ds.validate() == []
    nodes, trees = ds.table("nodes"), ds.table("trees")
    assert trees.height == 2 and nodes.height == 2 * (1 + 2 + 4)
    assert nodes.filter(nodes["kept"].fill_null(False)).height == 2 * 3
    hf_nodes = datasets.load_dataset(str(dataset), "nodes", split="test")  # the card names the task's split
    assert hf_nodes.num_rows == nodes.height and "value" in hf_nodes.column_names
    assert ds.manifest["model"]["sha256"] and ds.manifest["task"] == "gsm8k"


def test_node_kv_concatenates_to_the_path_cache(dataset: Path) -> None:
    ds = open_dataset(dataset)
    nodes = ds.table("nodes").filter(ds.table("nodes")["example_id"] == "gsm8k/test/0").sort("node_id").to_dicts()
    by = {n["node_id"]: n for n in nodes}
    for n in nodes:
        kv = ds.array("kv", n["kv_ref"])
        assert kv.shape[0] == 2 and kv.shape[3] == n["new_positions"]
        if n["parent_id"] is not None:
            assert n["latent_ref"] is not None and ds.array("latent", n["latent_ref"]).shape[0] == SMALL["latent_steps"]
            assert by[n["parent_id"]]["depth"] == n["depth"] - 1


def test_sibling_cosine_is_one_without_noise_and_below_with_it(dataset: Path, tiny_dir: Path, tmp_path: Path) -> None:
    from latentbench.methods.latent_tree.record import tree_stats

    noisy = tree_stats(open_dataset(dataset), cosines=True)
    quiet = generate(GenerateRequest(task="gsm8k", limit=1, model=str(tiny_dir), output=str(tmp_path / "quiet"),
                                     method_args={**SMALL, "latent_temperature": 0.0}, show_progress=False))
    still = tree_stats(open_dataset(quiet), cosines=True)
    assert still["sibling_latent_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert still["sibling_state_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert noisy["sibling_latent_cosine"] < 0.9  # default tau = 0.5: expected 1 / (1 + tau^2) = 0.8
    assert noisy["decoded_leaves"] == 2 * SMALL["keep"] and noisy["trees"] == 2


def test_control_none_tree_saves_nodes_without_latents(tiny_dir: Path, tmp_path: Path) -> None:
    out = generate(GenerateRequest(task="gsm8k", limit=1, model=str(tiny_dir), output=str(tmp_path / "none"),
                                   method_args={**SMALL, "control": "none"}, show_progress=False))
    ds = open_dataset(out)
    assert ds.validate() == []
    inner = ds.table("nodes").filter(ds.table("nodes")["depth"] > 0)
    assert inner.height == 6 and all(ds.array("latent", ref).shape[0] == 0 for ref in inner["latent_ref"])
    assert json.loads(ds.table("trees")["config"][0])["control"] == "none"


def test_replay_reproduces_every_kept_leaf_exactly(dataset: Path, tiny_dir: Path) -> None:
    from latentbench.models import load_model

    lm = load_model(str(tiny_dir))
    nodes = open_dataset(dataset).table("nodes")
    kept = nodes.filter(nodes["kept"].fill_null(False)).to_dicts()
    assert kept
    for row in kept:
        result = replay(dataset, row["example_id"], row["node_id"], lm=lm)
        assert result.saved_text == row["text"] and result.matches, (row["node_id"], result.text, row["text"])


def test_offset_extends_a_dataset_with_the_next_questions(dataset: Path, tiny_dir: Path, tmp_path: Path) -> None:
    """--offset 1 --limit 1 makes question 1's tree, the same as in the dataset of the first two."""
    out = generate(GenerateRequest(task="gsm8k", limit=1, offset=1, model=str(tiny_dir), output=str(tmp_path / "next"),
                                   method_args=SMALL, show_progress=False))
    nodes = open_dataset(out).table("nodes")
    assert nodes["example_id"].unique().to_list() == ["gsm8k/test/1"]
    first_two = open_dataset(dataset).table("nodes").filter(pl.col("example_id") == "gsm8k/test/1")
    assert nodes.select("node_id", "text", "consistency").equals(first_two.select("node_id", "text", "consistency"))
    assert open_dataset(out).manifest["method_config"]["offset"] == 1


def test_shards_are_disjoint_and_cover() -> None:
    items = list(range(11))
    parts = [shard(items, 3, i) for i in range(3)]
    assert sorted(x for p in parts for x in p) == items
    assert all(not set(a) & set(b) for a in parts for b in parts if a is not b)


def _sha256s(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(tiny_dir: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "latentbench", "generate", "gsm8k", "--limit", "3", "--model", str(tiny_dir),
            "--output", str(out), *SMALL_FLAGS]


def test_killed_and_resumed_run_equals_an_uninterrupted_one(tiny_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_cli(tiny_dir, whole), env=env, check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(_cli(tiny_dir, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # kill once the first question is committed
        if any((killed / ".journal").glob(f"*{JOURNAL_SUFFIX}")):  # a committed question
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "manifest.json").exists()
    resumed = subprocess.run(_cli(tiny_dir, killed), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert _sha256s(killed) == _sha256s(whole)
