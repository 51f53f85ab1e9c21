"""Checkpoints: the exported model (safetensors + config + provenance) and resume points.

    OUT/model.safetensors   trainable parameters + buffers (frozen parts come from ``build``)
    OUT/config.json         {"trainer": name, "config": {...}}
    OUT/provenance.json     datasets' manifest sha256s, base model sha256, versions, git sha, steps
    OUT/metrics.jsonl       one JSON line per train step and per validation
    OUT/checkpoints/step-NNNNNN/  model.safetensors optimizer.pt rng-<rank>.pt state.json (last 2 kept)

Every file and resume point is written under a temporary name and renamed into place, so a kill leaves
either the old or the new one. provenance.json is written last: its ``steps`` says an export is complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentbench.errors import UsageError
from latentbench.provenance import git_sha, now, package_versions

if TYPE_CHECKING:
    from latentbench.train.data import TrainData

WEIGHTS, CONFIG, PROVENANCE, STATE = "model.safetensors", "config.json", "provenance.json", "state.json"
CHECKPOINTS, KEEP = "checkpoints", 2


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def trained_output(directory: Path, trainer: str, flag: str, model_id: str, weights_sha256: str | None
                   ) -> dict[str, Any]:
    """The config record of a finished ``latentbench train TRAINER`` output, checked to be one and made on the
    base model with ``weights_sha256``; ``flag`` names the option that gave ``directory`` in errors."""
    prov, record = read_json(directory / PROVENANCE), read_json(directory / CONFIG)
    if not prov or not record or record.get("trainer") != trainer:
        raise UsageError(f"{flag}={directory}: not a finished `latentbench train {trainer}` output (no "
                         f"provenance.json / config.json of trainer {trainer})")
    trained_on = prov.get("base_model_sha256")
    if trained_on and weights_sha256 and trained_on != weights_sha256:
        raise UsageError(f"{flag}={directory}: trained on the outputs of model weights {trained_on[:12]}…, but "
                         f"{model_id} has {weights_sha256[:12]}…; train one on this model's datasets")
    return record


def frozen_names(module: torch.nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters(remove_duplicate=False) if not p.requires_grad}


def save_weights(path: Path, module: torch.nn.Module) -> None:
    """Trainable parameters and (persistent) buffers; copies, so tied tensors share no storage."""
    from safetensors.torch import save_file

    frozen = frozen_names(module)
    tensors = {k: v.detach().to("cpu", copy=True).contiguous()
               for k, v in module.state_dict().items() if k not in frozen}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def load_weights(path: Path, module: torch.nn.Module) -> None:
    """Load ``path`` into ``module``: no unexpected keys, shapes equal, only frozen parameters missing."""
    from safetensors.torch import load_file

    tensors = load_file(str(path), device="cpu")
    expected = module.state_dict()
    unexpected = sorted(set(tensors) - set(expected))
    missing = sorted(set(expected) - set(tensors) - frozen_names(module))
    reshaped = sorted(k for k in set(tensors) & set(expected) if tensors[k].shape != expected[k].shape)
    for what, keys in (("unexpected", unexpected), ("missing", missing), ("wrongly shaped", reshaped)):
        if keys:
            raise UsageError(f"{path}: does not fit the module; {what} tensors {', '.join(keys[:5])}"
                             f"{' ...' if len(keys) > 5 else ''}")
    module.load_state_dict(tensors, strict=False)


def load_checkpoint(directory: str | Path, module: torch.nn.Module) -> dict[str, Any]:
    """Load a trained model (or a resume point) into a freshly built module; returns
    ``{"trainer": name, "config": {...}}``."""
    directory = Path(directory)
    record = read_json(directory / CONFIG) or (read_json(directory / STATE) or {}).get("config")
    if record is None or not (directory / WEIGHTS).is_file():
        raise UsageError(f"{directory}: no {WEIGHTS} and {CONFIG} (expected the output of a finished training run)")
    load_weights(directory / WEIGHTS, module)
    return record


def provenance(data: TrainData, base_model_sha256: str | None, steps: int) -> dict[str, Any]:
    return {"datasets": data.manifest_hashes(), "base_model_sha256": base_model_sha256, "steps": steps,
            "packages": package_versions(), "git_sha": git_sha(), "created": now()}


def export(output: Path, module: torch.nn.Module, record: dict[str, Any], prov: dict[str, Any]) -> None:
    save_weights(output / WEIGHTS, module)
    write_json(output / CONFIG, record)
    write_json(output / PROVENANCE, prov)  # last: marks the export complete


def exported_steps(output: Path) -> int | None:
    prov = read_json(output / PROVENANCE)
    return prov.get("steps") if isinstance(prov, dict) and (output / WEIGHTS).is_file() else None


# -- resume points ---------------------------------------------------------------------------------
def resume_points(output: Path) -> list[Path]:
    root = output / CHECKPOINTS
    return sorted(p for p in root.glob("step-*") if (p / STATE).is_file()) if root.is_dir() else []


def read_state(point: Path) -> dict[str, Any]:
    return json.loads((point / STATE).read_text())


def save_resume_point(output: Path, module: torch.nn.Module, optimizer: Any, state: dict[str, Any], *,
                      rank: int = 0, barrier: Callable[[], Any] = lambda: None) -> None:
    """Rank 0 writes weights, optimizer and ``state`` (step, epoch, position, config); every rank its RNG."""
    final = output / CHECKPOINTS / f"step-{state['step']:06d}"
    tmp = final.with_name(f".tmp-{final.name}")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save(rng_state(), tmp / f"rng-{rank}.pt")
    if rank == 0:
        save_weights(tmp / WEIGHTS, module)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        write_json(tmp / STATE, state)
    barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in resume_points(output)[:-KEEP]:
            shutil.rmtree(old)
    barrier()


def load_resume_point(point: Path, module: torch.nn.Module, optimizer: Any, rank: int = 0) -> dict[str, Any]:
    """Restore weights, optimizer and this rank's RNG states; returns the saved state."""
    load_weights(point / WEIGHTS, module)
    optimizer.load_state_dict(torch.load(point / "optimizer.pt", map_location="cpu", weights_only=True))
    rng = point / f"rng-{rank}.pt"
    set_rng_state(torch.load(rng if rng.is_file() else point / "rng-0.pt", weights_only=True))
    return read_state(point)


def rng_state() -> dict[str, Any]:
    """Python, numpy (global) and torch (CPU and initialised CUDA) generator states."""
    np_state = np.random.get_state(legacy=False)
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {**np_state, "state": {**np_state["state"], "key": np_state["state"]["key"].tolist()}}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state({**np_state, "state": {**np_state["state"],
                                               "key": np.asarray(np_state["state"]["key"], dtype=np.uint32)}})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def describe(output: Path) -> list[tuple[str, str]]:
    """What ``latentbench info`` prints for a training output: trainer, config, what it was trained on
    (datasets, base model), steps, the last validation metrics."""
    record, prov = read_json(output / CONFIG) or {}, read_json(output / PROVENANCE) or {}
    lines = [("path", str(output)), ("trainer", str(record.get("trainer", "?"))),
             ("config", json.dumps(record.get("config", {}), sort_keys=True)),
             ("steps", str(prov.get("steps", "unfinished"))),
             ("trained on", str(prov.get("base_model_sha256") or "-") + " (base/generator model weights sha256)")]
    for i, ds in enumerate(prov.get("datasets", [])):
        lines.append((f"dataset {i}", f"{ds['path']} ({ds['kind']} v{ds['version']}, manifest sha256 "
                                      f"{ds['manifest_sha256'][:12]}…)"))
    lines += [("created", str(prov.get("created", "-"))), ("git", str(prov.get("git_sha") or "-"))]
    metrics = output / "metrics.jsonl"
    if metrics.is_file():
        val = [json.loads(line) for line in metrics.read_text().splitlines() if '"val"' in line]
        if val:
            lines.append(("last validation", ", ".join(f"{k}={v:.4g}" for k, v in val[-1].items()
                                                       if isinstance(v, float))))
    return lines
