"""Test isolation, as huggingface/datasets does it: every cache in a tmp dir, the Hub offline, no bars."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("LATENTBENCH_DATA_DIR", str(SHARED_DATA))
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache per test session: the embedded model is dequantized once, not per test."""
    return tmp_path_factory.mktemp("latentbench-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(session_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATENTBENCH_CACHE", str(session_cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ["LATENTBENCH_DATA_DIR"])
    if not path.is_dir():
        pytest.fail(f"benchmark data dir {path} is missing; set LATENTBENCH_DATA_DIR (CI uses ../shared/data)")
    return path


_SAVED: dict[tuple[str, int, int], Path] = {}


def saved_tiny_model(arch: str = "llama", seed: int = 0, hidden_size: int = 64) -> Path:
    """A tiny random model saved to a temporary dir once per session, to pass as ``--model PATH`` (loaded
    from disk it has a weights sha256, as a real model does)."""
    import tempfile

    from latentbench.models import tiny_model

    key = (arch, seed, hidden_size)
    if key not in _SAVED:
        path = Path(tempfile.mkdtemp(prefix=f"tiny-{arch}-{seed}-"))
        lm = tiny_model(arch, seed=seed, hidden_size=hidden_size)
        lm.model.save_pretrained(path)
        lm.tokenizer.save_pretrained(path)
        _SAVED[key] = path
    return _SAVED[key]
