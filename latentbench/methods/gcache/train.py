"""``latentbench train gcache --task TASK``: the graph policy and the cache fuser, by REINFORCE on answers.

Items are the task's *training* questions (GSM8K train, MBPP+ train = MBPP's train part, MedQA dev; a
task with none gives a held-apart share of its default split, ``dev_fraction`` by question-id hash,
which ``eval`` then leaves out of scoring: ``GCacheMethod.trained_on``). Per question and step, one rollout: a graph sampled from the GCN's edge
probabilities, its agents run on the frozen LM, the decision node's answer scored.

    reward    = correct − edge_cost · edges − token_cost · answer tokens
    advantage = reward − b,  b ← momentum · b + (1 − momentum) · mean reward   (b from before the batch)
    loss      = −mean_q advantage_q · (log π(graph_q) + fuser_weight · mean log p(answer_q | fused cache))

The second term is the same estimator for the fuser: the answer's likelihood depends on the fused cache,
so a rewarded answer is made likelier through the fuser's gates and weights (with a greedy decision node
it is a reward-weighted likelihood rather than a strict policy gradient; the agents' hand-offs are taken
as given). The baseline lives in the module (a buffer), so a resumed run continues with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from latentbench.config import ConfigError, option
from latentbench.errors import UsageError
from latentbench.methods.gcache.config import GraphRunConfig
from latentbench.models.loading import DEFAULT_MODEL
from latentbench.train.config import TrainConfig

if TYPE_CHECKING:
    import torch

    from latentbench.methods.gcache.model import GCacheModel
    from latentbench.models import LoadedModel
    from latentbench.tasks import Task


@dataclass
class GCacheTrainConfig(TrainConfig, GraphRunConfig):
    task: str = option("gsm8k", "Task whose training questions the graph learns on.")
    split: str = option("auto", "auto: the task's train split, else its dev split, else a held-apart share of "
                                "its default split (dev_fraction); or name a split.")
    dev_fraction: float = option(0.2, "split=auto without a train or dev split: share of the default split held "
                                      "apart for training (by question-id hash).")
    model: str = option(DEFAULT_MODEL, "The frozen LM the agents run on (embedded name, local path or Hub id).")
    baseline_momentum: float = option(0.9, "Moving-average baseline: b ← momentum · b + (1 − momentum) · mean reward.")
    edge_cost: float = option(0.0, "Reward cost per edge of the sampled graph.")
    token_cost: float = option(0.0, "Reward cost per answer token.")
    fuser_weight: float = option(1.0, "Weight of the fuser's term (mean answer log-probability) in the loss.")
    learning_rate: float = option(0.01, "Adam learning rate (G-Designer uses 0.1 on its GCN).")
    batch_size: int = option(4, "Questions (one rollout each) per optimizer step.")
    max_steps: int = option(10, "Optimizer steps in total.")
    eval_every: int = option(5, "Validation rollouts every N steps (and at the end).")
    save_every: int = option(1, "Resume point every N steps (a rollout is slow).")

    def __post_init__(self) -> None:
        TrainConfig.__post_init__(self)
        GraphRunConfig.__post_init__(self)
        if self.graph != "learned":
            raise ConfigError("graph", "train gcache learns the graph: graph=learned")
        if not 0 < self.dev_fraction < 1:
            raise ConfigError("dev_fraction", "must be in (0, 1)")
        if not 0 <= self.baseline_momentum <= 1:
            raise ConfigError("baseline_momentum", "must be in [0, 1]")
        for name in ("edge_cost", "token_cost", "fuser_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(name, "must be >= 0")


def training_split(task: Task, split: str) -> tuple[str, float | None]:
    """(split, held-apart share or None): train, else dev, else part of the default split."""
    if split != "auto":
        if split not in task.card.splits:
            raise UsageError(f"--split {split!r}: {task.name} has {', '.join(task.card.splits)}")
        return split, None
    for name in ("train", "dev"):
        if name in task.card.splits:
            return name, None
    return task.card.default_split, 1.0


class TaskQuestions:
    """Training items straight from a task split (no dataset): one row per question, split into train and
    validation by question-id hash like ``TrainData``."""

    def __init__(self, task: Task, split: str, held_apart: float | None, *, val_fraction: float,
                 limit: int | None) -> None:
        from latentbench.paths import data_dir
        from latentbench.train.data import question_hash, split_questions

        self.task, self.split, self.datasets = task, split, []
        examples = task.examples(split, data_dir=data_dir())
        if held_apart is not None:  # the default split: only the held-apart share is ever trained on
            examples = [ex for ex in examples if question_hash("dev:" + ex.id) < held_apart]
        self.examples = {ex.id: ex for ex in examples}
        ids = sorted(self.examples)[:limit] if limit is not None else sorted(self.examples)
        train, val = split_questions(ids, val_fraction)
        self._ids = {"train": train, "val": val}
        self._files = task.data_files(split, data_dir())

    def rows(self, split: str) -> list[dict[str, Any]]:
        return [{"example_id": q} for q in self._ids[split]]

    def question_ids(self, split: str) -> list[str]:
        return list(self._ids[split])

    def manifest_hashes(self) -> list[dict[str, str]]:
        """The task's data files (what provenance records and a resumed run must match)."""
        return [{"path": f"{self.task.name}:{self.split}:{f.get('name')}", "kind": "task", "version": self.split,
                 "manifest_sha256": str(f.get("sha256"))} for f in self._files]


class GCacheTrainer:
    """REINFORCE on answer correctness for the GCN + MLP edge policy and the cache fuser."""

    name = "gcache"
    method = "gcache"
    config_class = GCacheTrainConfig
    table = "questions"

    def __init__(self, config: GCacheTrainConfig) -> None:
        self.config = config
        self._lm: LoadedModel | None = None
        self._data: TaskQuestions | None = None
        self._setup: Any = None

    def train_data(self, datasets: list[Any]) -> TaskQuestions:
        from latentbench.tasks import get_task

        if datasets:
            raise UsageError(f"train gcache takes no datasets (got {', '.join(map(str, datasets))}): it rolls out "
                             "on --task's training questions")
        task = get_task(self.config.task)
        split, held = training_split(task, self.config.split)
        held = self.config.dev_fraction if held is not None else None
        self._data = TaskQuestions(task, split, held, val_fraction=self.config.val_fraction, limit=self.config.limit)
        return self._data

    def base_model_sha256(self) -> str | None:
        return self._lm.weights_sha256 if self._lm is not None else None

    def build(self, data: TaskQuestions) -> GCacheModel:
        from latentbench.methods.gcache.model import GCacheModel
        from latentbench.methods.gcache.pipeline import graph_setup
        from latentbench.models import load_model

        self._lm = load_model(self.config.model)
        self._lm.model.requires_grad_(False)  # frozen: only the policy and the fuser learn
        self._setup = graph_setup(self._lm, self.config, data.task)
        return GCacheModel.for_model(self._lm, self.config)

    def collate(self, rows: list[dict[str, Any]], data: TaskQuestions) -> dict[str, Any]:
        return {"example_ids": [r["example_id"] for r in rows]}

    def loss(self, module: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        import torch

        from latentbench.methods.gcache.pipeline import answer_log_prob, run_batch
        from latentbench.train.advantages import reinforce_advantages

        cfg, lm, data = self.config, self._lm, self._data
        assert lm is not None and data is not None, "build() loads the model"
        examples = [data.examples[i] for i in batch["example_ids"]]
        # validation draws from a fixed seed, so a checkpoint's validation loss can be recomputed exactly
        generator = None if module.training else torch.Generator().manual_seed(cfg.seed)
        max_new = cfg.max_new_tokens or data.task.card.max_new_tokens
        with torch.enable_grad():
            run = run_batch(lm, module, self._setup, cfg, data.task, examples, max_new, generator=generator)
        texts = lm.tokenizer.batch_decode(run.tokens, skip_special_tokens=True)
        correct = torch.tensor([self.correct(ex, t) for ex, t in zip(examples, texts, strict=True)])
        edges = torch.tensor([float(len(r.graph.edges)) for r in run.runs])
        lengths = torch.tensor([float(len(t)) for t in run.tokens])
        rewards = correct - cfg.edge_cost * edges - cfg.token_cost * lengths
        advantages, new_baseline = reinforce_advantages(rewards, float(module.baseline), cfg.baseline_momentum)
        terms = []
        with torch.enable_grad():
            for q, r in enumerate(run.runs):
                log_pi = r.graph.log_prob
                answer = answer_log_prob(lm, module, r, run.decision_ids[q], run.tokens[q]) if cfg.fuser_weight else 0.0
                terms.append(-advantages[q] * (log_pi + cfg.fuser_weight * answer))
            loss = torch.stack(terms).mean()
        if module.training:
            module.baseline.fill_(new_baseline)
        return loss, {"reward": float(rewards.mean()), "correct": float(correct.mean()),
                      "edges": float(edges.mean()), "baseline": float(new_baseline),
                      "edge_prob": _mean_prob(run.runs)}

    def correct(self, example: Any, text: str) -> float:
        """1.0 when the decision node's answer is right (the task's primary scoring), else 0.0."""
        data = self._data
        assert data is not None
        return float(data.task.score(example, text).correct[data.task.primary_variant])


def _mean_prob(runs: list[Any]) -> float:
    probs = [p for r in runs for p in r.graph.probs.values()]
    return sum(probs) / len(probs) if probs else 0.0
