"""``gcache``: a graph of role agents that pass fused KV caches (G-Designer's learned graph × LatentMAS's
cache hand-off); the decision node answers from what every agent handed on.

``eval`` scores the answers and reports edges, tokens and cache positions passed per question;
``generate`` writes ``graph-trace`` datasets (per question the graph, its edge probabilities, each
agent's role, turn and cache lengths, the answer; the agents' KV optionally).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from latentbench.config import config_dict, option
from latentbench.methods.base import Outcome
from latentbench.methods.gcache.config import GCacheConfig

if TYPE_CHECKING:
    from latentbench.methods.gcache.model import GCacheModel
    from latentbench.methods.gcache.pipeline import BatchRun
    from latentbench.models import LoadedModel
    from latentbench.store import Dataset, ExampleWriter
    from latentbench.tasks import Example, Task

log = logging.getLogger(__name__)


@dataclass
class GCacheMethodConfig(GCacheConfig):
    save_kv: bool = option(False, "generate: also save each agent's own KV (turn and latents) as arrays.")


class GCacheMethod:
    """Role agents on a (learned or fixed) graph pass fused KV caches; the decision node answers."""

    name = "gcache"
    config_class = GCacheMethodConfig
    dataset_kinds: dict[str, tuple[str, ...]] = {"graph-trace": ()}

    def __init__(self, config: GCacheMethodConfig) -> None:
        self.config = config

    def module(self, lm: LoadedModel) -> GCacheModel:
        """The policy and fuser: untrained (a random GCN, the identity fuser), or the checkpoint's (built at
        its widths)."""
        from dataclasses import replace
        from pathlib import Path

        from latentbench.methods.gcache.model import GCacheModel
        from latentbench.train.checkpoint import load_checkpoint, trained_output

        cfg = self.config
        if not cfg.checkpoint:
            return GCacheModel.for_model(lm, cfg).eval()
        trained = trained_output(Path(cfg.checkpoint), "gcache", "checkpoint", lm.model_id, lm.weights_sha256)["config"]
        widths = {name: trained.get(name, getattr(cfg, name)) for name in ("gcn_hidden", "embed_dim")}
        module = GCacheModel.for_model(lm, replace(cfg, **widths))
        load_checkpoint(cfg.checkpoint, module)
        for name in ("agents", "roles", "latent_steps", "latent_only", "edge_temperature"):
            if name in trained and trained[name] != getattr(cfg, name):
                log.warning("checkpoint %s was trained with %s=%s; this run uses %s", cfg.checkpoint, name,
                            trained[name], getattr(cfg, name))
        return module.eval()

    def resolved(self, task: Task) -> dict[str, Any]:
        return {**config_dict(self.config), "max_new_tokens": self.config.max_new_tokens or task.card.max_new_tokens}

    def run(self, lm: LoadedModel, task: Task, examples: list[Example]) -> Iterator[Outcome]:
        import torch

        from latentbench.methods.gcache.pipeline import graph_setup, run_batch

        cfg = self.config
        module = self.module(lm)
        setup = graph_setup(lm, cfg, task)
        generator = torch.Generator().manual_seed(cfg.seed)
        max_new = self.resolved(task)["max_new_tokens"]
        api = None
        if cfg.mode != "local":
            from latentbench.methods.gcache.api import client

            api = client(cfg)
        note = self._note_writer(lm) if cfg.mode == "api" else None
        for start in range(0, len(examples), cfg.batch_size):
            batch = examples[start:start + cfg.batch_size]
            with torch.no_grad():
                run = run_batch(lm, module, setup, cfg, task, batch, 0 if cfg.mode == "api" else max_new,
                                generator=generator, threshold=cfg.edge_decision == "threshold", note=note)
            for row, ex in enumerate(batch):
                yield self._outcome(lm, task, ex, run, row, max_new, api)

    def trained_on(self, task: Task, examples: list[Example]) -> tuple[set[str], str]:
        """The examples a checkpoint trained on a held-apart share of this split (a task without train or
        dev questions) learned from, which ``eval`` leaves out of scoring; and why."""
        import json
        from pathlib import Path

        from latentbench.methods.gcache.train import training_split
        from latentbench.train.data import question_hash

        if not self.config.checkpoint:
            return set(), ""
        trained = json.loads((Path(self.config.checkpoint) / "config.json").read_text())["config"]
        if trained.get("task") != task.name or training_split(task, trained.get("split", "auto"))[1] is None:
            return set(), ""
        seen = {ex.id for ex in examples if question_hash("dev:" + ex.id) < trained["dev_fraction"]}
        return seen, (f"checkpoint {self.config.checkpoint} was trained on them (the held-apart "
                      f"{trained['dev_fraction']:g} share of {task.name} {task.card.default_split})")

    def _note_writer(self, lm: LoadedModel) -> Any:
        """mode=api: each agent writes a note after its latents (greedy, ``agent_tokens``), what travels as text."""
        from latentbench.methods.generation import eos_token_ids
        from latentbench.models.latent import greedy_decode

        eos = eos_token_ids(lm)

        def write(paths: Any) -> tuple[list[list[int]], int]:
            return greedy_decode(lm, paths, None, self.config.agent_tokens, eos)

        return write

    def _outcome(self, lm: LoadedModel, task: Task, ex: Example, batch: BatchRun, row: int, max_new: int,
                 api: Any) -> Outcome:
        from latentbench.methods.gcache.api import api_messages, chat, hybrid_messages
        from latentbench.methods.prompts import question_text

        cfg, run, tokens = self.config, batch.runs[row], batch.tokens[row]
        local = lm.tokenizer.decode(tokens, skip_special_tokens=True)
        text, api_prompt = local, None
        if cfg.mode == "api":
            notes = [(run.agents[n].role, run.agents[n].text or "") for n in run.graph.order()]
            messages = api_messages(question_text(task, ex), task.card.answer_kind, notes)
            text, api_prompt = chat(cfg, api, messages), messages[-1]["content"]
        elif cfg.mode == "hybrid":
            messages = hybrid_messages(question_text(task, ex), task.card.answer_kind, local)
            text, api_prompt = chat(cfg, api, messages), messages[-1]["content"]
        score = task.score(ex, text)
        decision_positions = sum(b.length for b in run.decision_blocks())
        passed = sum(a.context_positions for a in run.agents) + decision_positions
        nodes = run.graph.nodes
        read = [{"role": run.agents[n].role, "prompt": run.agents[n].prompt} for n in run.graph.order()]
        read.append({"role": "decision", "prompt": batch.decision_prompts[row]})
        if api_prompt is not None:
            read.append({"role": f"decision ({cfg.mode} endpoint)", "prompt": api_prompt})
        return Outcome(
            ex, batch.decision_prompts[row], [text], len(tokens) + sum(a.note_tokens for a in run.agents), batch.forwards, latent_steps=nodes * cfg.steps_run,
            latent_budget=nodes * cfg.latent_steps, truncated=[len(tokens) >= max_new] if cfg.mode != "api" else None,
            agent_prompts=read,
            metrics={"edges": float(len(run.graph.edges)), "cache_positions_passed": float(passed),
                     "decision_cache_positions": float(decision_positions), "agents": float(nodes)},
            artifacts={"run": run, "local_text": local, "text": text, "api_prompt": api_prompt,
                       "prediction": score.extracted.get(task.primary_variant, score.extracted.get("program")),
                       "correct": score.correct[task.primary_variant], "decision_positions": decision_positions,
                       "passed": passed})

    def write(self, ex: ExampleWriter, outcome: Outcome, kind: str) -> None:
        import torch

        cfg, art = self.config, outcome.artifacts
        run = art["run"]
        order = run.graph.order()
        ex.add_rows("edges", [{"src": i, "dst": j, "prob": p, "taken": (i, j) in run.graph.edges}
                              for (i, j), p in sorted(run.graph.probs.items())])
        rows = []
        some = next((b for blocks in run.handed.values() for b in blocks), None)  # none: nothing was handed on
        dims = None if some is None else (some.keys.shape[0], some.keys.shape[1], some.keys.shape[3])
        for node in range(run.graph.nodes):
            agent = run.agents[node]
            ref = None
            own = [b for b in run.handed.get(node, []) if b.origin == node]
            if cfg.save_kv and own:
                keys = torch.cat([b.keys for b in own], dim=2)
                values = torch.cat([b.values for b in own], dim=2)
                ref = ex.add_array("agent_kv", torch.stack([keys, values]).to(torch.float16).cpu())
            rows.append({"node": node, "role": agent.role, "order": order.index(node),
                         "predecessors": run.graph.predecessors(node), "prompt": agent.prompt,
                         "context_positions": agent.context_positions,
                         "context_shape": None if dims is None else [dims[0], dims[1], agent.context_positions, dims[2]],
                         "handed_positions": agent.handed_positions,
                         "text": agent.text, "kv_ref": ref})
        ex.add_rows("agents", rows)
        log_prob = run.graph.log_prob
        ex.add_rows("questions", [{
            "graph": cfg.graph, "mode": cfg.mode, "cache_transport": "kv" if cfg.mode == "local" else "text",
            "n_agents": run.graph.nodes, "n_edges": len(run.graph.edges),
            "log_prob": float(log_prob) if log_prob is not None else None,
            "latent_steps": cfg.steps_run, "latent_only": cfg.latent_only, "control": cfg.control,
            "prompt": outcome.prompt, "api_prompt": art["api_prompt"], "local_output": art["local_text"],
            "output": art["text"], "prediction": art["prediction"], "gold": outcome.example.gold,
            "answer_correct": art["correct"], "decision_cache_positions": art["decision_positions"],
            "cache_positions_passed": art["passed"], "generated_tokens": outcome.generated_tokens}])

    @staticmethod
    def summarize(dataset: Dataset) -> str:
        questions = dataset.table("questions")
        correct = questions["answer_correct"].drop_nulls()
        n = max(questions.height, 1)
        return (f"questions={questions.height} edges_per_question={int(questions['n_edges'].sum() or 0) / n:.2f} "
                f"cache_positions_passed={int(questions['cache_positions_passed'].sum() or 0) / n:.1f} "
                f"accuracy={correct.mean() if len(correct) else float('nan'):.3f}")
