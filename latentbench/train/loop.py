"""The one training loop every learned part uses: seeded, accelerate-prepared, resumable.

    trainer = PrmTrainer(PrmConfig(max_steps=200))   # any Trainer (see below)
    result = run_training(trainer, ["data/gsm8k-latent-tree"], "ckpt/probe")

A run killed at any point (or stopped with Ctrl-C) continues from its last resume point when run again
with the same output, and its loss curve equals an uninterrupted run's: weights, optimizer, RNG states
and the position in the (seeded, per-epoch) batch order are all restored.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch

from latentbench.config import config_dict
from latentbench.errors import UsageError
from latentbench.progress import progress_bar
from latentbench.train import checkpoint as ckpt
from latentbench.train.config import TrainConfig
from latentbench.train.data import BatchOrder, TrainData
from latentbench.train.run_dir import METRICS, MetricsLog, TrainResult, check_datasets, check_output

log = logging.getLogger(__name__)


class Trainer(Protocol):
    """A learned part's training recipe. ``config`` is set by ``__init__``. Optionally
    ``base_model_sha256() -> str | None`` names the frozen base model for provenance,
    ``keep_row(row) -> bool`` filters the table's rows, ``val_metrics(module, data, device) -> dict``
    adds metrics computed over the whole validation set (AUROC, correlations: not batch means), and
    ``set_step(step)`` hears the step about to run (a schedule that survives a resume)."""

    name: ClassVar[str]
    config_class: ClassVar[type[TrainConfig]]
    table: ClassVar[str]  # store table whose rows are the training items
    config: TrainConfig

    def __init__(self, config: Any) -> None: ...

    def build(self, data: TrainData) -> torch.nn.Module:
        """The module; parameters with requires_grad are trained, the rest stay frozen."""
        ...

    def collate(self, rows: list[dict[str, Any]], data: TrainData) -> Any:
        """A batch (tensors, nested in dicts/lists) from rows, arrays fetched with ``data.array``."""
        ...

    def loss(self, module: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss to minimise, plus metrics to log (floats). ``module`` is the prepared one (a DDP
        wrapper on several GPUs): call it rather than reaching into its submodules."""
        ...


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Validation must not shift the random stream training continues with."""
    state = ckpt.rng_state()
    try:
        yield
    finally:
        ckpt.set_rng_state(state)


def evaluate(trainer: Trainer, module: torch.nn.Module, data: TrainData, batch_size: int,
             device: Any = "cpu") -> dict[str, float]:
    """Mean validation loss and metrics (weighted by rows per batch); {} without validation rows."""
    from accelerate.utils import send_to_device

    rows, totals = data.rows("val"), {}
    module.eval()
    with torch.no_grad(), preserved_rng():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            loss, extra = trainer.loss(module, send_to_device(trainer.collate(chunk, data), device))
            for key, value in {"loss": loss.item(), **extra}.items():
                totals[key] = totals.get(key, 0.0) + float(value) * len(chunk)
    metrics = {key: value / len(rows) for key, value in totals.items()}
    if rows and hasattr(trainer, "val_metrics"):
        with torch.no_grad(), preserved_rng():
            module.eval()
            metrics.update(trainer.val_metrics(module, data, device))
    module.train()
    return metrics


def open_train_data(trainer: Trainer, datasets: list[str | Path]) -> TrainData:
    """The trainer's items: its own source where it has one (``train_data(datasets)``, e.g. gcache's task
    questions, which must offer ``rows``, ``question_ids`` and ``manifest_hashes``), else the datasets'
    ``table`` rows."""
    if hasattr(trainer, "train_data"):
        return trainer.train_data(datasets)
    config = trainer.config
    return TrainData(datasets, trainer.table, val_fraction=config.val_fraction, limit=config.limit,
                     where=getattr(trainer, "keep_row", None))


def make_accelerator(device: str) -> Any:
    """accelerate keeps its state per process; one process may train on cpu, then on cuda (tests do)."""
    import accelerate
    from accelerate.state import AcceleratorState, PartialState

    state = PartialState._shared_state
    if state and state.get("num_processes") == 1 and (state["device"].type == "cpu") != (device == "cpu"):
        AcceleratorState._reset_state(reset_partial_state=True)  # as accelerate's own test cases do
    return accelerate.Accelerator(cpu=device == "cpu")


def run_training(trainer: Trainer, datasets: list[str | Path], output: str | Path, *,
                 show_progress: bool = True) -> TrainResult:
    """Train ``trainer`` on ``datasets`` into ``output`` (resuming or extending a run already there)."""
    import accelerate

    config, out = trainer.config, Path(output)
    record = {"trainer": trainer.name, "config": config_dict(config)}
    latest = check_output(out, record, config.max_steps)
    data = open_train_data(trainer, datasets)
    hashes = [d["manifest_sha256"] for d in data.manifest_hashes()]
    check_datasets(out, latest, hashes)
    if ckpt.exported_steps(out) == config.max_steps:
        log.warning("%s already holds a finished %s run of %d steps with this config and data; nothing to do",
                    out, trainer.name, config.max_steps)
        return MetricsLog(out / METRICS).result(out)
    accelerate.utils.set_seed(config.seed)
    rows = data.rows("train")
    if not rows:
        raise UsageError(f"{', '.join(map(str, datasets))}: no {trainer.table} rows to train on "
                         f"({len(data.question_ids('val'))} questions, all held out for validation)")
    module = trainer.build(data)
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise RuntimeError(f"trainer {trainer.name} built a module with no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    accelerator = make_accelerator(config.device)
    if config.device != "cpu" and accelerator.device.type == "cpu":
        raise UsageError(f"device={config.device}: no such accelerator is available here (use device=cpu)")
    rank, world = accelerator.process_index, accelerator.num_processes
    if config.batch_size < world:
        raise UsageError(f"batch_size={config.batch_size} is below the {world} processes sharing each batch")
    module, optimizer = accelerator.prepare(module, optimizer)
    order, step = BatchOrder(len(rows), config.batch_size, config.seed), 0
    if latest is not None:  # weights, optimizer state and RNG as they were at that step
        state = ckpt.load_resume_point(latest, accelerator.unwrap_model(module), optimizer, rank)
        step, order.epoch, order.position = state["step"], state["epoch"], state["position"]
        log.info("%s: resuming %s from step %d", out, trainer.name, step)
    metrics = MetricsLog(out / METRICS, write=accelerator.is_main_process)
    metrics.truncate(step)  # lines after the resume point are replayed
    out.mkdir(parents=True, exist_ok=True)
    steps = range(step + 1, config.max_steps + 1)
    show = show_progress and accelerator.is_main_process
    with progress_bar(f"train {trainer.name}", len(steps), show) as bar:
        try:
            module.train()
            for step in steps:
                if hasattr(trainer, "set_step"):
                    trainer.set_step(step)
                batch = [rows[i] for i in order.next()][rank::world]  # each process its share
                loss, extra = trainer.loss(module, accelerate.utils.send_to_device(
                    trainer.collate(batch, data), accelerator.device))
                accelerator.backward(loss)
                line = {"step": step, "split": "train", "loss": accelerator.reduce(loss.detach(), "mean").item(),
                        **{k: float(v) for k, v in extra.items()}}
                if config.grad_clip is not None:
                    line["grad_norm"] = float(accelerator.clip_grad_norm_(params, config.grad_clip))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                metrics.append(line)
                bar.advance(loss=line["loss"])
                if step % config.eval_every == 0 or step == config.max_steps:
                    val = evaluate(trainer, module, data, config.batch_size, accelerator.device)
                    if val:
                        metrics.append({"step": step, "split": "val", **val})
                if step % config.save_every == 0 or step == config.max_steps:
                    ckpt.save_resume_point(out, accelerator.unwrap_model(module), optimizer,
                                           {"step": step, "epoch": order.epoch, "position": order.position,
                                            "config": record, "datasets": hashes},
                                           rank=rank, barrier=accelerator.wait_for_everyone)
        except KeyboardInterrupt:
            saved = [ckpt.read_state(p)["step"] for p in ckpt.resume_points(out)]
            log.warning("%s: interrupted at step %d; run again to resume from step %d", out, step, max(saved, default=0))
            raise
    if accelerator.is_main_process:
        base = getattr(trainer, "base_model_sha256", lambda: None)()
        ckpt.export(out, accelerator.unwrap_model(module), record, ckpt.provenance(data, base, config.max_steps))
    accelerator.wait_for_everyone()
    return metrics.result(out)
