"""End to end on the real embedded default model, Qwen2.5-Coder-0.5B (marked `real_model`; runs in CI:
its one-time conversion ~70 s, then a few minutes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from latentbench.eval.schema import validate_results

pytestmark = pytest.mark.real_model


def cli(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "latentbench", *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.parametrize("task", ["gsm8k", "medqa", "humaneval"])
def test_cot_eval_writes_results_and_samples(task: str, tmp_path: Path) -> None:
    cli("eval", task, "--method", "cot", "--limit", "2", "--output-path", str(tmp_path), "--log-samples",
        "--method-arg", "max_new_tokens=48")
    [results] = list(tmp_path.glob(f"{task}-*.json"))
    record = json.loads(results.read_text())
    validate_results(record)
    assert record["model"]["source"] == "embedded" and len(record["model"]["sha256"]) == 64
    assert record["task"]["n"] == 2 and record["cost"]["generated_tokens"] > 0
    samples = [json.loads(line) for line in (tmp_path / record["samples_file"]).read_text().splitlines()]
    assert len(samples) == 2 and all(s["output"].strip() for s in samples)


def test_latent_mas_eval(tmp_path: Path) -> None:
    cli("eval", "gsm8k", "--method", "latent-mas", "--limit", "2", "--output-path", str(tmp_path),
        "--method-arg", "max_new_tokens=48")
    record = json.loads(next(tmp_path.glob("gsm8k-*.json")).read_text())
    assert record["metrics"]["latent_steps_mean"] == 12  # 3 agents x 4 latent steps


def test_generate_validate_replay(tmp_path: Path) -> None:
    out = tmp_path / "tree"
    cli("generate", "gsm8k", "--limit", "1", "--output", str(out), "--agents", "2", "--branches", "2",
        "--keep", "2", "--max-new-tokens", "40")
    assert cli("validate", str(out)).stdout.startswith("ok: ")
    import datasets
    import polars as pl

    nodes = datasets.load_dataset(str(out), "nodes", split="test")
    assert nodes.num_rows == 1 + 2 + 4
    kept = pl.DataFrame(nodes.to_dict()).filter(pl.col("kept").fill_null(False))
    leaf = kept["node_id"][0]
    replayed = cli("replay", str(out), "--node", str(leaf))
    assert "matches saved text: True" in replayed.stdout


def test_standard_speculative_decoding_matches_target_greedy(tmp_path: Path) -> None:
    """On the real model with its default early-exit draft: spd --judge none writes what cot writes."""
    outputs = {}
    for method, extra in (("cot", []), ("spd", ["--method-arg", "judge=none"])):
        cli("eval", "gsm8k", "--method", method, "--limit", "2", "--output-path", str(tmp_path / method),
            "--method-arg", "max_new_tokens=40", "--method-arg", "batch_size=2", *extra)
        record = json.loads(next((tmp_path / method).glob("gsm8k-*.json")).read_text())
        samples = (tmp_path / method / record["samples_file"]).read_text().splitlines()
        outputs[method] = [json.loads(line)["output"] for line in samples]
        if method == "spd":
            assert record["method_metrics"]["mean_accepted_length"] > 1.0  # layers:20 drafts get accepted
    assert outputs["spd"] == outputs["cot"]


def test_gcache_trains_then_evaluates_and_generates(tmp_path: Path) -> None:
    """One REINFORCE step on two GSM8K train questions, then the learned graph on one test question."""
    small = ["--agents", "2", "--latent-steps", "1", "--max-new-tokens", "24"]
    ckpt = tmp_path / "ckpt"
    cli("train", "gcache", "--task", "gsm8k", "--limit", "2", "--val-fraction", "0", "--batch-size", "2",
        "--max-steps", "1", "-o", str(ckpt), *small)
    prov = json.loads((ckpt / "provenance.json").read_text())
    assert prov["steps"] == 1 and prov["datasets"][0]["path"].startswith("gsm8k:train:")
    [line] = [json.loads(x) for x in (ckpt / "metrics.jsonl").read_text().splitlines()]
    assert 0 <= line["correct"] <= 1 and line["edges"] <= 2  # 2 agents: at most one edge each way, a DAG: 1
    cli("eval", "gsm8k", "--method", "gcache", "--checkpoint", str(ckpt), "--limit", "1", "--output-path",
        str(tmp_path / "eval"), *small)
    record = json.loads(next((tmp_path / "eval").glob("gsm8k-*.json")).read_text())
    assert record["method_metrics"]["agents"] == 2 and record["method_metrics"]["cache_positions_passed"] > 0
    out = tmp_path / "graphs"
    cli("generate", "gsm8k", "--method", "gcache", "--checkpoint", str(ckpt), "--limit", "1", "--output", str(out),
        "--save-kv", "true", *small)
    assert cli("validate", str(out)).stdout.startswith("ok: ")
