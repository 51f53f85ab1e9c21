"""Small synthetic examples of every dataset kind, for tests (store, trainers) and the kill/resume test.

Each ``write_<kind>(ex, i)`` writes example ``i`` through an ExampleWriter and returns what it wrote,
``{"tables": {table: rows}, "arrays": {array: [(ref, tensor)]}}``. Data depends only on ``i``, so a
resumed run regenerates exactly what an uninterrupted one would. Float tensors are built from random
*bit patterns* (NaN payloads, -0, subnormals included) to make bit-exactness checks meaningful.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from latentbench.store.writer import DatasetWriter, ExampleWriter

Expected = dict[str, dict[str, Any]]

INFO: dict[str, Any] = {
    "task": "synthetic", "split": "test", "model": {"id": "synthetic-model", "sha256": "ab" * 32},
    "method_config": {"k": 2, "agents": 2}, "seed": 0, "license": "MIT", "version": "0.1.0",
}


def random_bits(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> Any:
    """float16/float32 numpy array, or a bfloat16 torch tensor, holding arbitrary bit patterns."""
    if dtype == "bfloat16":
        import torch

        bits = rng.integers(0, 1 << 16, size=shape, dtype=np.uint16)
        return torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16)
    width = {"float16": np.uint16, "float32": np.uint32}[dtype]
    return rng.integers(0, np.iinfo(width).max, size=shape, dtype=width, endpoint=True).view(dtype)


def _new() -> Expected:
    return {"tables": {}, "arrays": {}}


def _array(out: Expected, ex: ExampleWriter, name: str, tensor: Any, **kw: Any) -> int:
    ref = ex.add_array(name, tensor, **kw)
    out["arrays"].setdefault(name, []).append((ref, tensor))
    return ref


def _rows(out: Expected, ex: ExampleWriter, table: str, rows: list[dict[str, Any]]) -> None:
    ex.add_rows(table, rows)
    out["tables"].setdefault(table, []).extend({"example_id": ex.example_id, **r} for r in rows)


def write_latent_tree(ex: ExampleWriter, i: int, kv_dtype: str = "bfloat16") -> Expected:
    """A 2-agent, k=2 tree (7 nodes, 4 leaves, top-2 decoded) with per-node KV, latents, hiddens."""
    rng = np.random.default_rng(i)
    out = _new()
    with_kv = "kv" in ex.array_names
    parents = [None, 0, 0, 1, 1, 2, 2]
    leaves = [3, 4, 5, 6]
    consistency = rng.random(len(parents)).round(6).tolist()
    kept = sorted(leaves, key=lambda n: -consistency[n])[:2]
    correct = {n: bool(rng.integers(0, 2)) for n in kept}
    nodes = []
    for node, parent in enumerate(parents):
        depth = 0 if parent is None else (1 if parent == 0 else 2)
        below = [n for n in kept if n == node or parents[n] == node or (parents[n] is not None and parents[parents[n]] == node)]
        n_correct = sum(correct[n] for n in below)
        new_positions = int(rng.integers(1, 6))
        row: dict[str, Any] = {
            "node_id": node, "parent_id": parent, "agent_index": max(depth - 1, 0), "depth": depth,
            "branch_index": 0 if parent is None else parents[: node].count(parent), "role": ["root", "planner", "solver"][depth],
            "consistency": consistency[node], "n_leaves": len(below), "n_correct": n_correct,
            "value": n_correct / len(below) if below else None, "label": n_correct > 0 if below else None,
            "new_positions": new_positions, "kept": (node in kept) if node in leaves else None,
            "latent_ref": _array(out, ex, "latent", random_bits(rng, (depth + 1, 8), "float16")),
        }
        if node in kept:
            row |= {"text": f"so the answer is {node}", "prediction": str(node), "correct": correct[node],
                    "hidden_ref": _array(out, ex, "hidden", random_bits(rng, (depth + 1, 8), "float32"))}
        if with_kv:
            kv = random_bits(rng, (2, 2, 2, new_positions, 4), kv_dtype)
            row["kv_ref"] = _array(out, ex, "kv", kv, owner=f"nodes:{node}")
        nodes.append(row)
    _rows(out, ex, "nodes", nodes)
    n_correct = sum(correct.values())
    _rows(out, ex, "trees", [{
        "question_id": str(i), "question": f"What is {i} + {i}?", "gold": str(2 * i),
        "config": json.dumps({"agents": 2, "k": 2, "top_k": 2}), "n_agents": 2, "branching": 2, "top_k": 2,
        "n_nodes": len(parents), "n_leaves": len(kept), "n_correct": n_correct,
        "prediction": str(kept[0]), "correct": correct[kept[0]],
        "solver_prompt": "Answer:", "max_new_tokens": 16,
    }])
    return out


def write_kv_shard(ex: ExampleWriter, i: int, kv_dtype: str = "float16") -> Expected:
    """1-3 agent caches of varied length; the kv_segments rows come from the writer."""
    rng = np.random.default_rng(i)
    out = _new()
    for agent in range(int(rng.integers(1, 4))):
        _array(out, ex, "kv", random_bits(rng, (2, 3, 2, int(rng.integers(1, 9)), 4), kv_dtype), owner=f"agent:{agent}")
    return out


def write_halting_segment(ex: ExampleWriter, i: int) -> Expected:
    rng = np.random.default_rng(i)
    out = _new()
    rows = []
    for seg in range(3):
        n = int(rng.integers(3, 40))
        budget = int(np.clip(np.ceil(0.5 * n**0.8), 1, 8))
        used = int(rng.integers(1, budget + 1))
        probs = rng.random(used).round(4).tolist()
        rows.append({
            "segment_index": seg, "source_kind": "image" if seg == 2 else "step", "source_size": n,
            "budget": budget, "used_length": used, "stop_probs": probs, "stage": "C",
            "stopped_early": used < budget, "text": None if seg == 2 else f"step {seg}",
            "answer_correct": bool(i % 2),
            "latent_ref": _array(out, ex, "segment_latents", random_bits(rng, (used, 8), "float32")),
        })
    _rows(out, ex, "segments", rows)
    _rows(out, ex, "questions", [{
        "prompt": f"Q{i}:", "answer_target": f"The answer is {i}.", "gold": str(i), "output": f"The answer is {i % 3}.",
        "prediction": str(i % 3), "answer_correct": i % 3 == i, "plan": "gold", "control": "off", "stage": "C",
        "n_segments": len(rows), "latents_used": sum(r["used_length"] for r in rows),
        "latent_budget_total": sum(r["budget"] for r in rows)}])
    return out


def write_spd_trace(ex: ExampleWriter, i: int) -> Expected:
    rng = np.random.default_rng(i)
    out = _new()
    for trace in range(int(rng.integers(1, 3))):
        steps, mismatches = [], []
        n_steps = int(rng.integers(3, 9))
        for step in range(n_steps):
            draft, target = int(rng.integers(0, 50)), int(rng.integers(0, 50))
            match = draft == target or bool(rng.random() < 0.6)
            target = draft if match else target
            score = None if match else round(float(rng.random()), 4)
            accepted = match or (score is not None and score > 0.5)
            steps.append({"trace_index": trace, "step": step, "position": 10 + step, "draft_token": draft,
                          "target_token": target, "match": match, "judge_score": score, "accepted": accepted,
                          "emitted_token": draft if accepted else target})
            if not match:
                mismatches.append(steps[-1])
        ref = _array(out, ex, "features", random_bits(rng, (len(mismatches), 6), "float16")) if mismatches else None
        _rows(out, ex, "steps", steps)
        _rows(out, ex, "mismatches", [
            {"trace_index": trace, "mismatch_index": k, "step": m["step"], "position": m["position"],
             "draft_token": m["draft_token"], "target_token": m["target_token"], "judge_score": m["judge_score"],
             "accepted": m["accepted"], "important": None if k % 3 == 2 else bool(k % 2), "mined_prediction": None,
             "features_ref": ref} for k, m in enumerate(mismatches)])
        n_match = n_steps - len(mismatches)
        n_judge = sum(m["accepted"] for m in mismatches)
        _rows(out, ex, "traces", [{
            "trace_index": trace, "n_steps": n_steps, "n_verifications": n_steps, "n_proposed": 2 * n_steps,
            "n_matches": n_match, "n_judge_accepted": n_judge, "n_rejected": len(mismatches) - n_judge,
            "acceptance_rate": (n_match + n_judge) / (2 * n_steps), "mean_accepted_length": 1 + (n_match + n_judge) / n_steps,
            "n_emitted": n_steps, "prompt": f"question {i}", "text": f"answer {i}", "prediction": str(i),
            "gold": str(i), "answer_correct": True, "features_ref": ref,
        }])
    return out


def write_graph_trace(ex: ExampleWriter, i: int) -> Expected:
    """A 3-agent DAG (edges sampled from random probabilities, in row-major order) with each agent's KV."""
    rng = np.random.default_rng(i)
    out = _new()
    edges, considered = [], []
    for src in range(3):
        for dst in range(src + 1, 3):
            p = round(float(rng.random()), 4)
            considered.append({"src": src, "dst": dst, "prob": p, "taken": bool(rng.random() < p)})
            if considered[-1]["taken"]:
                edges.append((src, dst))
    _rows(out, ex, "edges", considered)
    agents, passed = [], 0
    for node in range(3):
        preds = [s for s, d in edges if d == node]
        own = int(rng.integers(1, 6))
        read = 2 * sum(preds)  # any numbers; the schema only bounds them
        passed += read
        agents.append({"node": node, "role": ["math solver", "inspector", "mathematical analyst"][node], "order": node,
                       "predecessors": preds, "prompt": f"agent {node}: Q{i}", "context_positions": read,
                       "context_shape": [2, 2, read, 4],
                       "handed_positions": own, "text": None,
                       "kv_ref": _array(out, ex, "agent_kv", random_bits(rng, (2, 2, 2, own, 4), "float16"))})
    _rows(out, ex, "agents", agents)
    _rows(out, ex, "questions", [{
        "graph": "learned", "mode": "local", "cache_transport": "kv", "n_agents": 3, "n_edges": len(edges),
        "log_prob": round(float(-rng.random() * 3), 4), "latent_steps": 4, "latent_only": False, "control": "off",
        "prompt": f"Q{i}:", "api_prompt": None, "local_output": f"The answer is {i % 4}.",
        "output": f"The answer is {i % 4}.", "prediction": str(i % 4), "gold": str(i), "answer_correct": i % 4 == i,
        "decision_cache_positions": 7, "cache_positions_passed": passed + 7, "generated_tokens": 5}])
    return out


WRITERS: dict[str, Callable[..., Expected]] = {
    "latent-tree": write_latent_tree, "kv-shard": write_kv_shard,
    "halting-segment": write_halting_segment, "spd-trace": write_spd_trace, "graph-trace": write_graph_trace,
}


def make_synthetic_dataset(path: str | Path, kind: str, n: int = 4, extra_kinds: tuple[str, ...] = (),
                           **writer_kwargs: Any) -> dict[str, Any]:
    """Write and finalize ``n`` synthetic examples of ``kind``; returns the manifest."""
    w = DatasetWriter(path, kind=kind, info=INFO, extra_kinds=list(extra_kinds), **writer_kwargs)
    for i in range(n):
        eid = f"synthetic/test/{i}"
        if eid not in w.completed_ids():
            with w.example(eid) as ex:
                WRITERS[kind](ex, i)
    return w.finalize()
