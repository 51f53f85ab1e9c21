"""Benchmark latent-tree expansion: batched sibling expansion with cache reuse vs per-path recomputation.

One tree per GSM8K question (default 3 agents x 3 branches, m = 4 latent steps: 1+3+9+27 = 40 nodes),
on the real embedded model (SmolLM2-135M, float32), every method in the same process, interleaved:

  * ``ours``: ``LatentTreeMethod.grow`` itself. Its leaf decoding (``_decode_kept``, run with
    ``max_new_tokens=1``) is timed apart and subtracted, so the row is the latent expansion only:
    prompt prefill, latent steps, handoffs, per-node KV extraction, consistency scores.
  * ``naive``: every node on its own at batch 1, recomputed from the root prompt through all its
    ancestors' latent steps and handoffs (no cache shared between nodes).
  * ``batched-recompute``: one batched pass per depth that recomputes every node of the level from
    the root prompt (batching without cache reuse).
  * ``reuse-batch1``: each child forks its parent's cache and runs at batch 1 (cache reuse without
    batching).

All methods draw the per-node noise of ``LatentTreeMethod._noise`` (``node_noise`` seeded by seed,
question, node id), so they compute the same latents: every node's last hidden state and the leaves'
latent-step hidden states are asserted equal to ours: in float32 per node within
``max|a - b| <= atol + rtol * max|b|`` (float32 GEMM kernels round differently at batch 1 and batch k, and
the latent feedback amplifies that to ~1e-3 on leaf states of magnitude ~50; a real bug gives O(1)); then,
after the timings, exactly (``--f64-atol``) with the model in float64 for ours vs naive on a few leaves of
the first question (``--f64-leaves``). ``forward share`` is the share of the row's wall time spent inside
``lm.model.base_model.forward``.

Usage: ``python bench/latent_tree/run.py [--limit 2] [--seed 0] [--agents 3 --branches 3 --latent-steps 4]
[--methods ours,naive | all] [--out bench/results/latent_tree.json]``; ``--quick`` runs a tiny random model
in seconds. The default (ours + naive) takes ~2.5-5 min on 2 shared cores; ``--methods all`` about twice that.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from latentbench.methods.agents import AgentPrompts, agent_prompts, as_batch
from latentbench.methods.latent_tree.config import LatentTreeConfig
from latentbench.methods.latent_tree.method import LatentTreeMethod
from latentbench.methods.latent_tree.tree import TreeNode
from latentbench.models.latent import (
    Paths,
    Realignment,
    latent_steps,
    prefill,
    realignment,
)

if TYPE_CHECKING:
    from latentbench.models import LoadedModel
    from latentbench.tasks import Example, Task

METHODS = ("ours", "naive", "batched-recompute", "reuse-batch1")
Hidden = dict[int, torch.Tensor]  # node id -> a hidden-state tensor


class ForwardTimer:
    """Sums the wall time spent inside ``lm.model.base_model.forward`` (patched on the instance)."""

    def __init__(self, lm: LoadedModel) -> None:
        self.module = lm.model.base_model
        self.inner = self.module.forward
        self.cuda = lm.device.type == "cuda"
        self.seconds, self.calls = 0.0, 0

    def _timed(self, *args: Any, **kwargs: Any) -> Any:
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            if self.cuda:
                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def __enter__(self) -> ForwardTimer:
        self.module.forward = self._timed
        return self

    def __exit__(self, *exc: object) -> None:
        del self.module.forward  # back to the class's forward


class TimedTree(LatentTreeMethod):
    """``grow`` unchanged; its leaf decoding and per-node KV extraction are timed apart."""

    def __init__(self, config: LatentTreeConfig, timer: ForwardTimer) -> None:
        super().__init__(config)
        self.timer = timer
        self.decode_s = self.decode_forward_s = self.kv_s = 0.0
        self.decode_calls = 0

    def _decode_kept(self, *args: Any, **kwargs: Any) -> int:
        start, fwd, calls = time.perf_counter(), self.timer.seconds, self.timer.calls
        try:
            return super()._decode_kept(*args, **kwargs)
        finally:
            self.decode_s += time.perf_counter() - start
            self.decode_forward_s += self.timer.seconds - fwd
            self.decode_calls += self.timer.calls - calls

    def _kv(self, paths: Paths, row: int, start: int, end: int) -> torch.Tensor:
        t0 = time.perf_counter()
        try:
            return super()._kv(paths, row, start, end)
        finally:
            self.kv_s += time.perf_counter() - t0


@dataclass
class Shape:
    """The tree ``grow`` builds, node ids in its breadth-first order: parent ids and depths."""

    parent: list[int | None]
    depth: list[int]
    by_depth: list[list[int]] = field(default_factory=list)

    @classmethod
    def build(cls, agents: int, branches: int) -> Shape:
        parent: list[int | None] = [None]
        depth, by_depth = [0], [[0]]
        for d in range(1, agents + 1):
            level = []
            for p in by_depth[-1]:
                for _ in range(branches):
                    level.append(len(parent))
                    parent.append(p)
                    depth.append(d)
            by_depth.append(level)
        return cls(parent, depth, by_depth)

    def chain(self, node: int) -> list[int]:
        """Ids from depth 1 down to ``node`` (the root excluded)."""
        out: list[int] = []
        current: int | None = node
        while current is not None and current != 0:
            out.append(current)
            current = self.parent[current]
        return out[::-1]


@dataclass
class Result:
    last: Hidden  # every node's last hidden state
    steps: Hidden  # leaves' hidden states after each latent step [m, hidden]
    wall_s: float = 0.0
    forward_s: float = 0.0
    forwards: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class Bench:
    """One question's tree computed several ways over the same model, prompts and node noise."""

    def __init__(self, lm: LoadedModel, task: Task, cfg: LatentTreeConfig, realign: Realignment,
                 timer: ForwardTimer) -> None:
        self.lm, self.task, self.cfg, self.realign, self.timer = lm, task, cfg, realign, timer
        self.shape = Shape.build(cfg.agents, cfg.branches)
        self.method = TimedTree(cfg, timer)  # its _noise is the noise every method uses

    def _prompts(self, example: Example) -> AgentPrompts:
        cfg = self.cfg
        return agent_prompts(self.lm, self.task, example, cfg.agents, cfg.pipeline_roles, cfg.roles)

    def _noise(self, example: Example, ids: list[int]) -> Callable[[int], torch.Tensor] | None:
        return self.method._noise(example, ids, self.realign)

    def _advance(self, example: Example, prompts: AgentPrompts, paths: Paths, ids: list[int],
                 depth: int) -> tuple[Paths, torch.Tensor]:
        """One agent turn on a batch of paths whose rows end at nodes ``ids`` (depth ``depth``):
        m latent steps with those nodes' noise, then the next agent's handoff (not after the last)."""
        paths, _, hiddens = latent_steps(self.lm, paths, self.cfg.latent_steps, self.realign,
                                         self._noise(example, ids))
        if depth < self.cfg.agents:
            paths = prefill(self.lm, as_batch(prompts.handoffs[depth - 1], len(ids), self.lm.device), paths=paths)
        return paths, hiddens

    def _root(self, prompts: AgentPrompts, rows: int = 1) -> Paths:
        return prefill(self.lm, as_batch(prompts.first, rows, self.lm.device))

    def ours(self, example: Example) -> Result:
        m = self.method
        m.decode_s = m.decode_forward_s = m.kv_s = 0.0
        m.decode_calls = 0
        outcome = m.grow(self.lm, self.task, example, self.realign)
        nodes: list[TreeNode] = outcome.artifacts["nodes"]
        assert [n.parent_id for n in nodes] == self.shape.parent, "grow's node order differs from Shape"
        leaves = set(self.shape.by_depth[-1])
        return Result({n.node_id: n.last_hidden for n in nodes},
                      {n.node_id: n.hidden for n in nodes if n.node_id in leaves and n.hidden is not None},
                      extra={"decode_s": m.decode_s, "decode_forward_s": m.decode_forward_s, "kv_extract_s": m.kv_s})

    def naive(self, example: Example, nodes: list[int] | None = None) -> Result:
        prompts = self._prompts(example)
        res = Result({}, {})
        for node in range(len(self.shape.parent)) if nodes is None else nodes:
            paths, hiddens = self._root(prompts), None
            for depth, nid in enumerate(self.shape.chain(node), 1):
                paths, hiddens = self._advance(example, prompts, paths, [nid], depth)
            res.last[node] = paths.hidden[0]
            if self.shape.depth[node] == self.cfg.agents and hiddens is not None:
                res.steps[node] = hiddens[0]
        return res

    def batched_recompute(self, example: Example) -> Result:
        prompts = self._prompts(example)
        res = Result({}, {})
        for d, level in enumerate(self.shape.by_depth):
            chains = [self.shape.chain(n) for n in level]
            paths, hiddens = self._root(prompts, len(level)), None
            for depth in range(1, d + 1):
                paths, hiddens = self._advance(example, prompts, paths, [c[depth - 1] for c in chains], depth)
            for row, node in enumerate(level):
                res.last[node] = paths.hidden[row]
                if d == self.cfg.agents and hiddens is not None:
                    res.steps[node] = hiddens[row]
        return res

    def reuse_batch1(self, example: Example) -> Result:
        prompts = self._prompts(example)
        root = self._root(prompts)
        res = Result({0: root.hidden[0]}, {})
        states = {0: root}
        for d, level in enumerate(self.shape.by_depth[1:], 1):
            for node in level:
                parent = states[self.shape.parent[node]]  # type: ignore[index]
                fork = parent.select(torch.tensor([0]))  # a copy of the parent's cache; parent stays valid
                paths, hiddens = self._advance(example, prompts, fork, [node], d)
                res.last[node] = paths.hidden[0]
                if d == self.cfg.agents:
                    res.steps[node] = hiddens[0]
                else:
                    states[node] = paths
            for node in self.shape.by_depth[d - 1]:
                states.pop(node, None)  # parents done: free their caches
        return res

    def run(self, name: str, example: Example) -> Result:
        fn = {"ours": self.ours, "naive": self.naive, "batched-recompute": self.batched_recompute,
              "reuse-batch1": self.reuse_batch1}[name]
        fwd_s, calls = self.timer.seconds, self.timer.calls
        start = time.perf_counter()
        res = fn(example)
        wall = time.perf_counter() - start
        res.forward_s, res.forwards = self.timer.seconds - fwd_s, self.timer.calls - calls
        if name == "ours":  # drop the leaf decoding: identical work in every method, reported apart
            wall -= res.extra["decode_s"]
            res.forward_s -= res.extra["decode_forward_s"]
            res.forwards -= self.method.decode_calls
            res.extra["grow_s"] = wall + res.extra["decode_s"]
        res.wall_s = wall
        return res


def compare(ref: Result, res: Result, atol: float, rtol: float) -> tuple[float, float]:
    """Max |a - b| over ``res``'s nodes (last hidden states; leaves' step states), and the worst
    max|a - b| / (atol + rtol * max|b|) per node tensor (<= 1 passes)."""
    worst_abs = worst_ratio = 0.0
    for a, b in ((ref.last, res.last), (ref.steps, res.steps)):
        assert b.keys() <= a.keys(), f"nodes missing from ours: {sorted(b.keys() - a.keys())}"
        for k in (k for k in b if b[k].numel()):
            diff = float((a[k].double() - b[k].double()).abs().max())
            worst_abs = max(worst_abs, diff)
            worst_ratio = max(worst_ratio, diff / (atol + rtol * float(b[k].double().abs().max())))
    return worst_abs, worst_ratio


def float64_check(bench: Bench, example: Example, leaves: int, atol: float) -> dict[str, Any]:
    """Ours (``grow``) vs naive with the model in float64, on ``leaves`` leaves spread over the tree."""
    lm, dtype, start = bench.lm, bench.lm.model.dtype, time.perf_counter()
    lm.model.double()
    try:
        f64 = Bench(lm, bench.task, bench.cfg, realignment(lm, bench.cfg.realign_lambda), bench.timer)
        level = f64.shape.by_depth[-1]
        picked = sorted({level[round(i * (len(level) - 1) / max(leaves - 1, 1))] for i in range(leaves)})
        worst_abs, _ = compare(f64.ours(example), f64.naive(example, picked), atol, 0.0)
    finally:
        lm.model.to(dtype)
    assert worst_abs <= atol, f"float64: naive differs from ours on leaves {picked}: {worst_abs:.2e} > {atol}"
    return {"question": example.id, "leaves": picked, "max_abs_diff": worst_abs, "atol": atol,
            "seconds": round(time.perf_counter() - start, 2)}


def load(args: argparse.Namespace) -> LoadedModel:
    from latentbench.models import load_model, tiny_model

    return tiny_model("llama") if args.quick else load_model(args.model, device=args.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=2, help="GSM8K test questions (one tree each)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-node branching noise")
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--branches", type=int, default=3)
    parser.add_argument("--latent-steps", type=int, default=4)
    parser.add_argument("--keep", type=int, default=5, help="leaves ours decodes (timed apart)")
    parser.add_argument("--decode-tokens", type=int, default=1, help="ours' solver max_new_tokens")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours per question (median)")
    parser.add_argument("--baseline-repeats", type=int, default=1, help="timed runs of each baseline per question")
    parser.add_argument("--methods", default="ours,naive",
                        help=f"comma list of {', '.join(METHODS)}, or 'all' (ours and naive always run)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (0 = torch's default); 1 is far steadier on a shared machine")
    parser.add_argument("--atol", type=float, default=1e-4, help="float32 check: max|a-b| <= atol + rtol*max|b|")
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--f64-leaves", type=int, default=3, help="leaves checked in float64 (0: skip)")
    parser.add_argument("--f64-atol", type=float, default=1e-9)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--quick", action="store_true", help="tiny random model, 1 question: a smoke run")
    parser.add_argument("--out", default=None,
                        help="JSON path (default bench/results/latent_tree.json, or latent_tree_quick.json with --quick)")
    args = parser.parse_args()
    methods = list(METHODS) if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown --methods {sorted(unknown)}; choose from {METHODS}")
    methods = ["ours", "naive", *[m for m in METHODS[2:] if m in methods]]
    if args.quick:
        args.limit = 1
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    from latentbench.paths import data_dir
    from latentbench.tasks import get_task

    began = time.perf_counter()
    lm = load(args)
    task = get_task("gsm8k")
    root = Path(args.data_dir) if args.data_dir else data_dir() or Path(__file__).resolve().parents[3] / "shared" / "data"
    examples = task.examples(limit=args.limit, data_dir=root)
    cfg = LatentTreeConfig(agents=args.agents, branches=args.branches, latent_steps=args.latent_steps,
                           keep=min(args.keep, args.branches ** args.agents), max_new_tokens=args.decode_tokens,
                           seed=args.seed)
    realign = realignment(lm, cfg.realign_lambda)  # computed/cached outside the timings
    timer = ForwardTimer(lm)
    bench = Bench(lm, task, cfg, realign, timer)
    n_nodes = len(bench.shape.parent)
    print(f"model {lm.model_id} ({lm.describe()['dtype']}, {lm.device}), threads {torch.get_num_threads()}, "
          f"{len(examples)} question(s), tree {cfg.agents}x{cfg.branches}, m={cfg.latent_steps}: "
          f"{n_nodes} nodes/question", flush=True)

    runs: dict[str, list[list[Result]]] = {m: [[] for _ in examples] for m in methods}
    diffs: dict[str, dict[str, float]] = {m: {} for m in methods}  # ours: its repeats vs its first run
    with timer, torch.inference_mode():
        bench.run("ours", examples[0])  # warm-up, untimed
        for qi, example in enumerate(examples):
            rounds = max(args.repeats, args.baseline_repeats)
            for r in range(rounds):
                order = methods[r % len(methods):] + methods[: r % len(methods)]  # rotate the order
                for name in order:
                    if r >= (args.repeats if name == "ours" else args.baseline_repeats):
                        continue
                    res = bench.run(name, example)
                    runs[name][qi].append(res)
                    print(f"  q{qi} round {r} {name:<18} {res.wall_s:7.2f} s", flush=True)
            ref = runs["ours"][qi][0]
            for name in methods:
                for res in runs[name][qi][1 if name == "ours" else 0:]:
                    assert len(res.last) == n_nodes, f"{name} computed {len(res.last)} of {n_nodes} nodes"
                    worst_abs, ratio = compare(ref, res, args.atol, args.rtol)
                    diffs[name][example.id] = max(diffs[name].get(example.id, 0.0), worst_abs)
                    assert ratio <= 1, (f"{name} differs from ours on {example.id}: max |diff| {worst_abs:.2e}, "
                                        f"{ratio:.2f}x the tolerance (atol {args.atol}, rtol {args.rtol})")
    f64 = float64_check(bench, examples[0], args.f64_leaves, args.f64_atol) if args.f64_leaves > 0 else None
    if f64:
        print(f"float64 check: ours vs naive on leaves {f64['leaves']} of {f64['question']}: "
              f"max |diff| {f64['max_abs_diff']:.1e} (<= {args.f64_atol}), {f64['seconds']:.0f} s", flush=True)

    def med(name: str, qi: int, key: Callable[[Result], float]) -> float:
        return statistics.median(key(r) for r in runs[name][qi])

    rows = []
    naive_wall = sum(med("naive", qi, lambda r: r.wall_s) for qi in range(len(examples)))
    for name in methods:
        wall = sum(med(name, qi, lambda r: r.wall_s) for qi in range(len(examples)))
        fwd = sum(med(name, qi, lambda r: r.forward_s) for qi in range(len(examples)))
        nodes = n_nodes * len(examples)
        rows.append({"method": name, "nodes": nodes, "wall_s": wall, "nodes_per_s": nodes / wall,
                     "speedup_vs_naive": naive_wall / wall, "forward_share": fwd / wall,
                     "forward_calls": runs[name][0][0].forwards,
                     "max_abs_diff_vs_ours": max(diffs[name].values(), default=0.0),
                     "runs_wall_s": [[round(r.wall_s, 4) for r in q] for q in runs[name]]})
    ours_extra = {k: sum(med("ours", qi, lambda r, k=k: r.extra[k]) for qi in range(len(examples)))
                  for k in ("grow_s", "decode_s", "decode_forward_s", "kv_extract_s")}

    header = f"{'method':<18} {'nodes':>5} {'wall s':>8} {'nodes/s':>8} {'speedup':>8} {'fwd share':>9} {'max|diff|':>9}"
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        print(f"{row['method']:<18} {row['nodes']:>5} {row['wall_s']:>8.2f} {row['nodes_per_s']:>8.2f} "
              f"{row['speedup_vs_naive']:>7.1f}x {row['forward_share']:>9.1%} {row['max_abs_diff_vs_ours']:>9.1e}")
    print(f"\nours, apart from the rows: leaf decoding ({cfg.keep} leaves, max_new_tokens={cfg.max_new_tokens}) "
          f"{ours_extra['decode_s']:.2f} s; per-node KV extraction (inside ours' wall) {ours_extra['kv_extract_s']:.2f} s; "
          f"forward calls per tree: " + ", ".join(f"{r['method']} {r['forward_calls']}" for r in rows))

    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": lm.describe(), "device": str(lm.device), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "questions": [e.id for e in examples], "config": {
            "agents": cfg.agents, "branches": cfg.branches, "latent_steps": cfg.latent_steps, "keep": cfg.keep,
            "latent_temperature": cfg.latent_temperature, "seed": cfg.seed, "decode_max_new_tokens": cfg.max_new_tokens,
            "repeats": args.repeats, "baseline_repeats": args.baseline_repeats, "atol": args.atol, "rtol": args.rtol},
        "nodes_per_question": n_nodes, "rows": rows, "ours_extra_s": ours_extra, "max_abs_diff_vs_ours": diffs,
        "float64_check": f64,
        "notes": "wall_s sums over questions the median of each question's timed runs; ours excludes leaf decoding "
                 "(ours_extra_s.decode_s); forward_share = time inside lm.model.base_model.forward / wall_s.",
    }
    out = Path(args.out or f"bench/results/latent_tree{'_quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} ({time.perf_counter() - began:.0f} s in all)")


if __name__ == "__main__":
    main()
