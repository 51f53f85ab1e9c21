"""push / pull through the real huggingface_hub client against the loopback server in hub_server.py."""

from __future__ import annotations

import json
import shutil

import pytest
from hub_server import HubServer
from test_store_cli import run_cli

from latentbench.store import open_dataset
from latentbench.store.synthetic import INFO, make_synthetic_dataset, write_spd_trace
from latentbench.store.testing import file_hashes
from latentbench.store.writer import DatasetWriter


@pytest.fixture(scope="module")
def server():
    with HubServer() as hub:
        yield hub


@pytest.fixture
def online(server, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    server.requests.clear()
    return server


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("push") / "ds"
    make_synthetic_dataset(path, "latent-tree", n=3, extra_kinds=("kv-shard",), chunk_elements=64)
    return path


def test_push_then_pull_round_trip(online, dataset, tmp_path):
    code, out = run_cli("push", dataset, "alice/tree", "--version", "0.1.0", "--private")
    assert code == 0, out
    assert "tagged v0.1.0" in out

    create = online.calls("POST", r"^/api/repos/create$")
    assert [r.json() for r in create] == [{"name": "tree", "organization": "alice", "visibility": "private",
                                           "type": "dataset"}]
    assert all(r.headers.get("authorization") == "Bearer hf_test_token" for r in online.requests
               if r.path.startswith("/api/datasets/alice/tree") or r.path == "/api/repos/create")
    [commit] = online.calls("POST", r"^/api/datasets/alice/tree/commit/main$")
    ops = [json.loads(line) for line in commit.body.splitlines()]
    assert ops[0]["value"]["summary"] == "latentbench latent-tree dataset v0.1.0"
    sent = {op["value"]["path"] for op in ops[1:] if op["key"] == "file"}
    assert sent == set(file_hashes(dataset))  # every dataset file, manifest included, nothing else
    [tag] = online.calls("POST", r"^/api/datasets/alice/tree/tag/")
    repo = online.repos[("dataset", "alice/tree")]
    assert tag.json()["tag"] == "v0.1.0" and repo.tags["v0.1.0"] == repo.branches["main"]
    assert tag.path.endswith(repo.tags["v0.1.0"])  # tagged the exact commit that was uploaded
    assert repo.private

    code, out = run_cli("pull", "alice/tree@v0.1.0", "--to", tmp_path / "pulled")
    assert code == 0, out
    assert file_hashes(tmp_path / "pulled") == file_hashes(dataset)
    assert online.calls("GET", r"^/api/datasets/alice/tree/revision/v0.1.0$")


def test_existing_tag_is_refused_before_uploading(online, dataset):
    assert run_cli("push", dataset, "alice/again", "--version", "0.1.0")[0] == 0
    online.requests.clear()
    code, out = run_cli("push", dataset, "alice/again", "--version", "0.1.0")
    assert code == 2 and "error: alice/again: tag v0.1.0 already exists" in out
    assert not online.calls("POST", "/commit/") and not online.calls("POST", "/tag/")


def test_new_version_gets_its_own_tag_and_old_one_still_pulls(online, dataset, tmp_path):
    assert run_cli("push", dataset, "alice/versions", "--version", "0.1.0")[0] == 0
    v2 = tmp_path / "v2"  # a different dataset (no arrays at all) as version 0.2.0
    w = DatasetWriter(v2, kind="spd-trace", info={**INFO, "version": "0.2.0"})
    with w.example("e0") as ex:
        write_spd_trace(ex, 0)
    w.finalize()
    assert run_cli("push", v2, "alice/versions", "--version", "0.2.0")[0] == 0
    repo = online.repos[("dataset", "alice/versions")]
    assert set(repo.tags) == {"v0.1.0", "v0.2.0"} and repo.tags["v0.1.0"] != repo.tags["v0.2.0"]
    assert not any(p.startswith("arrays.zarr/") for p in repo.commits[repo.tags["v0.2.0"]])  # stale files deleted
    assert run_cli("pull", "alice/versions@v0.1.0", "--to", tmp_path / "old")[0] == 0
    assert file_hashes(tmp_path / "old") == file_hashes(dataset)
    assert run_cli("pull", "alice/versions@v0.2.0", "--to", tmp_path / "new")[0] == 0
    assert file_hashes(tmp_path / "new") == file_hashes(v2)


def test_dry_run_lists_files_and_sends_nothing(online, dataset):
    code, out = run_cli("push", dataset, "alice/dry", "--version", "0.1.0", "--dry-run")
    assert code == 0 and online.requests == []
    listed = dict(reversed(line.split()) for line in out.splitlines()[:-1])
    assert listed == {rel: str((dataset / rel).stat().st_size) for rel in file_hashes(dataset)}
    assert out.splitlines()[-1].startswith(f"dry run: would upload {len(listed)} files")


def test_invalid_dataset_is_never_pushed(online, dataset, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    (bad / "README.md").write_text("edited")
    code, out = run_cli("push", bad, "alice/bad", "--version", "0.1.0")
    assert code == 2 and f"refusing to push an invalid dataset: {bad}/README.md:" in out
    assert online.requests == []
    code, out = run_cli("push", dataset, "alice/bad", "--version", "9.9.9")
    assert code == 2 and "dataset version is 0.1.0 but --version is 9.9.9" in out
    assert online.requests == []


def test_offline_mode_is_honoured(online, dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out = run_cli("push", dataset, "alice/off", "--version", "0.1.0")
    assert code == 2 and "HF_HUB_OFFLINE is set" in out
    code, out = run_cli("pull", "alice/off", "--to", tmp_path / "x")
    assert code == 2 and "HF_HUB_OFFLINE is set" in out
    assert online.requests == [] and not (tmp_path / "x").exists()


def test_pull_never_overwrites_and_rejects_a_corrupt_remote(online, dataset, tmp_path):
    assert run_cli("push", dataset, "alice/remote", "--version", "0.1.0")[0] == 0
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    code, out = run_cli("pull", "alice/remote@v0.1.0", "--to", existing)
    assert code == 2 and "not empty; refusing to overwrite" in out
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]

    repo = online.repos[("dataset", "alice/remote")]
    files = repo.commits[repo.tags["v0.1.0"]]
    files["README.md"] = b"tampered"
    code, out = run_cli("pull", "alice/remote@v0.1.0", "--to", tmp_path / "fresh")
    assert code == 2 and "pulled dataset is invalid: alice/remote@v0.1.0/README.md: size" in out
    assert not (tmp_path / "fresh").exists() and not any(p.name.startswith(".fresh") for p in tmp_path.iterdir())

    code, out = run_cli("pull", "alice/remote@v9.0.0", "--to", tmp_path / "nover")
    assert code == 2 and "revision not found" in out


def test_open_dataset_by_hub_id_uses_the_cache(online, dataset, monkeypatch):
    assert run_cli("push", dataset, "alice/cached", "--version", "0.1.0")[0] == 0
    ds = open_dataset("alice/cached@v0.1.0")
    assert file_hashes(ds.path) == file_hashes(dataset)
    assert ds.table("nodes").height == 21
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    online.requests.clear()
    assert open_dataset("alice/cached@v0.1.0").path == ds.path and online.requests == []
