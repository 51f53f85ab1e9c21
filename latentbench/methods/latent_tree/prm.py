"""Latent-PRM: a process reward model trained offline on latent-tree datasets (``latentbench train prm``).

Each training item is a node of a tree (depth >= 1) with at least one decoded leaf below it. Input:
its whole path from the root, each agent's latent block in order (the ``hidden`` arrays: the last
hidden state after every latent step), or for the ``kv`` head the path's saved KV. Target: the node's
value (share of correct decoded leaves below it), weighted by how many decoded leaves it rests on.
Loss: BCE on the soft label (``loss=mse``: squared error of the probability). Validation adds, over the
whole held-out split: AUROC of the hard label, Brier score against the value, and the Pearson
correlation with the Monte-Carlo value per depth.

A PRM reads one generator's latents: the datasets must come from one generator, whose weights sha256
goes into the checkpoint's provenance; ``load_prm`` refuses a checkpoint made on another one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from latentbench.config import ConfigError, option
from latentbench.errors import UsageError
from latentbench.models.loading import DEFAULT_MODEL
from latentbench.train.config import TrainConfig

if TYPE_CHECKING:
    import torch

    from latentbench.models import LoadedModel
    from latentbench.train.data import TrainData

SCORING_PROMPT = "\nIs the reasoning so far on track to the correct answer?"


@dataclass
class PrmConfig(TrainConfig):
    head: Literal["mlp", "backbone", "kv"] = option("mlp", "mlp: MLP on the path's latent states; backbone: "
                                                    "projector into a causal LM; kv: the path's KV as its cache.")
    width: int = option(256, "mlp head: hidden width of its 3 layers.")
    loss: Literal["bce", "mse"] = option("bce", "bce on the soft value, or mse of the probability.")
    backbone: str = option(DEFAULT_MODEL, "backbone/kv heads: the causal LM (embedded name, path or Hub id).")
    lora: bool = option(False, "backbone/kv heads: train LoRA adapters (peft) instead of a frozen backbone.")
    lora_rank: int = option(8, "LoRA rank.")
    prompt: str = option(SCORING_PROMPT, "kv head: the scoring prompt read after the path's cache.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head not in ("mlp", "backbone", "kv"):
            raise ConfigError("head", "expected one of mlp, backbone, kv")
        if self.loss not in ("bce", "mse"):
            raise ConfigError("loss", "expected bce or mse")
        for name in ("width", "lora_rank"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1")


class PrmTrainer:
    """``latentbench train prm DATASET… --head mlp|backbone|kv --output DIR``."""

    name = "prm"
    method = "latent-tree"
    config_class = PrmConfig
    table = "nodes"

    def __init__(self, config: PrmConfig) -> None:
        self.config = config
        self._paths: dict[tuple[int, str], dict[int, dict[str, Any]]] = {}  # (dataset, example) -> node rows
        self._generator: dict[str, Any] | None = None

    @staticmethod
    def keep_row(row: dict[str, Any]) -> bool:
        return row["depth"] >= 1 and bool(row["n_leaves"]) and row["value"] is not None

    def base_model_sha256(self) -> str | None:
        return (self._generator or {}).get("sha256")

    # -- module -----------------------------------------------------------------------------------------
    def build(self, data: TrainData) -> torch.nn.Module:
        from latentbench.methods.latent_tree.prm_heads import kv_shape

        self._generator = data.generator()
        first = data.rows("train")[0]
        module = build_head(self.config, self._states(data, [first])["states"].shape[-1])
        if self.config.head == "mlp":
            module.standardize_on(self._states(data, data.rows("train")[:512]))
        if self.config.head == "kv":
            saved = tuple(data.array(first, "kv_ref").shape[i] for i in (1, 2, 4))
            if saved != kv_shape(module.body.config):
                raise UsageError(f"head=kv: the datasets' KV has (layers, kv_heads, head_dim) = {saved} but backbone "
                                 f"{self.config.backbone} has {kv_shape(module.body.config)}; use a backbone of the "
                                 "generator's architecture, or head=backbone")
        return module

    # -- batches ----------------------------------------------------------------------------------------
    def collate(self, rows: list[dict[str, Any]], data: TrainData) -> dict[str, Any]:
        import torch

        batch = self.inputs(rows, data)
        batch["value"] = torch.tensor([float(r["value"]) for r in rows])
        batch["weight"] = torch.tensor([float(r["n_leaves"]) for r in rows])
        return batch

    def inputs(self, rows: list[dict[str, Any]], data: TrainData) -> dict[str, Any]:
        """The head's inputs for node rows: their paths' latent states, or (``kv``) their paths' KV."""
        return self._kv(data, rows) if self.config.head == "kv" else self._states(data, rows)

    def _path(self, data: TrainData, row: dict[str, Any], with_root: bool = False) -> list[dict[str, Any]]:
        """The rows of the node's path, root first; without the root (it holds no latents) by default."""
        from latentbench.train.data import SOURCE

        key = (row[SOURCE], row["example_id"])
        if key not in self._paths:
            import polars as pl

            nodes = data.dataset(row).table("nodes").filter(pl.col("example_id") == row["example_id"])
            self._paths[key] = {r["node_id"]: {**r, SOURCE: row[SOURCE]} for r in nodes.to_dicts()}
        by_id, chain, node = self._paths[key], [], row["node_id"]
        while node is not None:
            chain.append(by_id[node])
            node = by_id[node]["parent_id"]
        return chain[::-1][0 if with_root else 1:]

    def _states(self, data: TrainData, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        blocks = []
        for row in rows:
            path = self._path(data, row)
            blocks.append(torch.cat([data.array(r, "hidden_ref").float() for r in path]))  # [d * m, hidden]
            if not len(blocks[-1]):
                raise UsageError(f"{data.dataset(row).path}: node {row['node_id']} of {row['example_id']} has no "
                                 "latent states (a control=none tree?); a PRM needs latent steps")
        return states_batch(blocks)

    def _kv(self, data: TrainData, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        kvs = [torch.cat([data.array(r, "kv_ref").float() for r in self._path(data, row, with_root=True)], dim=3)
               for row in rows]  # the path's cache: each node's KV positions, in order
        return kv_batch(kvs)

    # -- objective and metrics ---------------------------------------------------------------------------
    def loss(self, module: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        import torch.nn.functional as F

        logits = module(batch)
        weight = batch["weight"] / batch["weight"].sum()
        if self.config.loss == "bce":
            per_row = F.binary_cross_entropy_with_logits(logits, batch["value"], reduction="none")
        else:
            per_row = (logits.sigmoid() - batch["value"]) ** 2
        return (per_row * weight).sum(), {}

    def val_metrics(self, module: torch.nn.Module, data: TrainData, device: Any) -> dict[str, float]:
        import torch
        from accelerate.utils import send_to_device

        rows, scores = data.rows("val"), []
        for start in range(0, len(rows), self.config.batch_size):
            batch = send_to_device(self.collate(rows[start:start + self.config.batch_size], data), device)
            scores.append(module(batch).sigmoid().cpu())
        probs = torch.cat(scores).double().numpy()
        return node_metrics(probs, rows)


def states_batch(blocks: list[torch.Tensor]) -> dict[str, Any]:
    """Paths of latent states [L_i, hidden] -> left padded ``states`` [B, L, hidden] and ``mask`` [B, L]."""
    import torch

    longest = max(len(b) for b in blocks)
    states = torch.zeros(len(blocks), longest, blocks[0].shape[-1])
    mask = torch.zeros(len(blocks), longest, dtype=torch.long)
    for i, block in enumerate(blocks):
        states[i, longest - len(block):] = block
        mask[i, longest - len(block):] = 1
    return {"states": states, "mask": mask}


def kv_batch(kvs: list[torch.Tensor]) -> dict[str, Any]:
    """Path KVs [2, layers, kv_heads, S_i, head_dim] -> left padded ``kv`` [B, 2, layers, kv_heads, S, head_dim]."""
    import torch

    longest = max(kv.shape[3] for kv in kvs)
    out = torch.zeros(len(kvs), *kvs[0].shape[:3], longest, kvs[0].shape[4])
    mask = torch.zeros(len(kvs), longest, dtype=torch.long)
    for i, kv in enumerate(kvs):
        out[i, :, :, :, longest - kv.shape[3]:] = kv
        mask[i, longest - kv.shape[3]:] = 1
    return {"kv": out, "mask": mask}


def node_metrics(probs: Any, rows: list[dict[str, Any]]) -> dict[str, float]:
    """AUROC of the hard label, Brier score against the value, Pearson correlation with the value per
    depth, and ``sibling_auroc``: among siblings with different values, the share of (higher, lower)
    pairs the PRM orders the same way (ties count half). AUROC over all nodes also rewards telling easy
    questions from hard ones; only the sibling order matters for choosing a path. Metrics undefined on
    these rows (one class, constant values, no such siblings) are left out."""
    import numpy as np
    from scipy.stats import mannwhitneyu, pearsonr

    labels = np.array([bool(r["n_correct"]) for r in rows])
    values = np.array([float(r["value"]) for r in rows])
    depths = np.array([r["depth"] for r in rows])
    out = {"brier": float(np.mean((probs - values) ** 2))}
    if labels.any() and not labels.all():  # AUROC = Mann-Whitney U / (positives x negatives)
        u = mannwhitneyu(probs[labels], probs[~labels]).statistic
        out["auroc"] = float(u / (labels.sum() * (~labels).sum()))
    for depth in sorted(set(depths.tolist())):
        at = depths == depth
        if at.sum() > 2 and np.ptp(values[at]) > 0 and np.ptp(probs[at]) > 0:
            out[f"corr_depth{depth}"] = float(pearsonr(probs[at], values[at]).statistic)
    families: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(rows):
        families.setdefault((r.get("_dataset"), r["example_id"], r["parent_id"]), []).append(i)
    pairs = [np.sign(probs[i] - probs[j]) * np.sign(values[i] - values[j]) for group in families.values()
             for a, i in enumerate(group) for j in group[a + 1:] if values[i] != values[j]]
    if pairs:
        out["sibling_auroc"] = float(np.mean([(p + 1) / 2 for p in pairs]))
    return out


def build_head(config: PrmConfig, generator_hidden: int) -> torch.nn.Module:
    from latentbench.methods.latent_tree.prm_heads import BackboneHead, KvHead, MlpHead

    if config.head == "mlp":
        return MlpHead(generator_hidden, config.width)
    from latentbench.models import load_model

    backbone = load_model(config.backbone)
    body = backbone.model.base_model
    if config.head == "backbone":
        return BackboneHead(body, generator_hidden, config.lora, config.lora_rank)
    prompt = backbone.tokenizer(config.prompt, add_special_tokens=False)["input_ids"]
    return KvHead(body, prompt, config.lora, config.lora_rank)


@dataclass(frozen=True)
class Generator:
    """What a PRM must match: the generator whose latents it reads (from a loaded model or a dataset)."""

    model_id: str
    weights_sha256: str | None
    hidden_size: int

    @classmethod
    def of(cls, lm: LoadedModel) -> Generator:
        return cls(lm.model_id, lm.weights_sha256, lm.model.config.hidden_size)


def load_prm(directory: str | Path, generator: Generator) -> tuple[torch.nn.Module, PrmConfig]:
    """A trained PRM for scoring ``generator``'s paths; refused if it was trained on another generator."""
    from latentbench.config import build_config
    from latentbench.train.checkpoint import load_checkpoint, trained_output

    directory = Path(directory)
    record = trained_output(directory, "prm", "prm", generator.model_id, generator.weights_sha256)
    config = build_config(PrmConfig, record["config"], {})
    module = build_head(config, generator.hidden_size)
    load_checkpoint(directory, module)
    return module.eval(), config
