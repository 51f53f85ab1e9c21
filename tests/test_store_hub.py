"""push / pull through the real huggingface_hub client against the loopback server in hub_server.py."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil

import pytest
from hub_server import HubServer
from test_store_cli import run_cli

from latentbench.errors import DataNotFoundError
from latentbench.store import open_dataset
from latentbench.store.synthetic import INFO, make_synthetic_dataset, write_spd_trace
from latentbench.store.testing import file_hashes
from latentbench.store.writer import DatasetWriter


@pytest.fixture(scope="module")
def server():
    with HubServer() as hub:
        yield hub


@pytest.fixture
def online(server, monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    # hf_xet would take LFS-mode files to Xet storage, which the loopback server lacks: the client's own
    # switch sends them through the LFS batch API instead.
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("LATENTBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
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
    regular = {op["value"]["path"] for op in ops[1:] if op["key"] == "file"}
    lfs = {op["value"]["path"] for op in ops[1:] if op["key"] == "lfsFile"}
    assert regular | lfs == set(file_hashes(dataset)) and not regular & lfs  # every file once, nothing else
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
    v2 = tmp_path / "v2"  # a different dataset (no arrays at all: a trace without mismatches) as version 0.2.0
    w = DatasetWriter(v2, kind="spd-trace", info={**INFO, "version": "0.2.0"})
    with w.example("e0") as ex:
        ex.add_rows("steps", [{"trace_index": 0, "step": 0, "position": 0, "draft_token": 7, "target_token": 7,
                               "match": True, "accepted": True, "emitted_token": 7}])
        ex.add_rows("traces", [{"trace_index": 0, "n_steps": 1, "n_verifications": 1, "n_proposed": 1,
                                "n_matches": 1, "n_judge_accepted": 0, "n_rejected": 0, "acceptance_rate": 1.0,
                                "mean_accepted_length": 2.0, "prompt": "q", "answer_correct": None}])
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


def _lfs_expected(files: list[str]) -> set[str]:
    """What the Hub stores through LFS here: Parquet (.gitattributes) and the binary Zarr chunks."""
    return {f for f in files if f.startswith("tables/") or (f.startswith("arrays.zarr/") and not f.endswith(".json"))}


def test_parquet_and_array_files_go_through_the_lfs_batch_api(online, dataset, tmp_path):
    code, out = run_cli("push", dataset, "alice/lfs", "--version", "0.1.0")
    assert code == 0, out
    manifest = json.loads((dataset / "manifest.json").read_text())
    files = sorted(file_hashes(dataset))
    expected = _lfs_expected(files)
    assert any(f.endswith(".parquet") for f in expected) and any("/data/" in f for f in expected)

    [pre] = online.calls("POST", r"^/api/datasets/alice/lfs/preupload/main$")
    assert {f["path"] for f in pre.json()["files"]} == set(files)
    [commit] = online.calls("POST", r"^/api/datasets/alice/lfs/commit/main$")
    ops = [json.loads(line) for line in commit.body.splitlines()][1:]
    lfs_ops = {op["value"]["path"]: op["value"] for op in ops if op["key"] == "lfsFile"}
    assert set(lfs_ops) == expected  # README, manifest and zarr.json travel inline ...
    assert {op["value"]["path"] for op in ops if op["key"] == "file"} == set(files) - expected
    for path, op in lfs_ops.items():  # ... the rest as pointers to objects uploaded before the commit
        assert op["oid"] == manifest["files"][path]["sha256"]
        assert op["oid"] == hashlib.sha256((dataset / path).read_bytes()).hexdigest()
        assert op["size"] == (dataset / path).stat().st_size

    batches = online.calls("POST", r"^/datasets/alice/lfs\.git/info/lfs/objects/batch$")
    assert batches and all(b.headers.get("authorization") == "Bearer hf_test_token" for b in batches)
    asked = [o["oid"] for b in batches for o in b.json()["objects"]]
    assert {b.json()["operation"] for b in batches} == {"upload"}
    oids = {op["oid"] for op in lfs_ops.values()}
    assert set(asked) == oids
    puts = online.calls("PUT", r"^/lfs-objects/dataset/alice/lfs/")
    assert sorted(p.path.rsplit("/", 1)[-1] for p in puts) == sorted(oids)  # each distinct object once
    assert len(online.calls("POST", r"^/datasets/alice/lfs\.git/info/lfs/objects/verify$")) == len(oids)
    assert not [r for r in online.requests if "xet" in r.path.lower()]  # Xet stayed off
    repo = online.repos[("dataset", "alice/lfs")]
    assert set(repo.lfs_objects) == oids
    assert {p for p, b in repo.commits[repo.tags["v0.1.0"]].items() if repo.is_lfs(b)} == expected

    # downloads see them as LFS files (sha256 etags) and come back byte-identical
    code, out = run_cli("pull", "alice/lfs@v0.1.0", "--to", tmp_path / "back")
    assert code == 0, out
    assert file_hashes(tmp_path / "back") == file_hashes(dataset)


def test_private_against_an_existing_public_repo_is_refused(online, dataset):
    assert run_cli("push", dataset, "alice/public", "--version", "0.1.0")[0] == 0
    online.requests.clear()
    code, out = run_cli("push", dataset, "alice/public", "--version", "0.1.0", "--private")
    assert code == 2 and out.strip().splitlines() == [
        "error: alice/public: exists and is public, so --private would not apply; make it private on the Hub "
        "first, or push without --private"]
    assert not online.calls("POST", r"/preupload/|/commit/|/tag/|/repos/create|lfs") and not online.calls("PUT", "")
    assert not online.repos[("dataset", "alice/public")].private

    assert run_cli("push", dataset, "alice/secret", "--version", "0.1.0", "--private")[0] == 0
    online.requests.clear()
    code, out = run_cli("push", dataset, "alice/secret", "--version", "0.1.0", "--private")
    assert code == 2 and "tag v0.1.0 already exists" in out  # an existing private repo passes the check
    assert online.repos[("dataset", "alice/secret")].private


def test_unpinned_open_dataset_follows_main_and_says_which_commit(online, dataset, tmp_path, caplog, monkeypatch):
    assert run_cli("push", dataset, "alice/moving", "--version", "0.1.0")[0] == 0
    repo = online.repos[("dataset", "alice/moving")]
    first = repo.branches["main"]
    with caplog.at_level(logging.INFO, logger="latentbench.store.reader"):
        ds = open_dataset("alice/moving")
    assert (ds.hub_id, ds.revision, ds.kind) == ("alice/moving", first, "latent-tree")
    assert f"hub='alice/moving@{first}'" in repr(ds)
    assert f"alice/moving: read main at commit {first}; open alice/moving@{first} to read exactly this again" \
        in caplog.text

    v2 = tmp_path / "v2"  # a new version moves main
    w = DatasetWriter(v2, kind="spd-trace", info={**INFO, "version": "0.2.0"})
    with w.example("e0") as ex:
        write_spd_trace(ex, 0)
    w.finalize()
    assert run_cli("push", v2, "alice/moving", "--version", "0.2.0")[0] == 0
    second = repo.branches["main"]
    assert second != first
    ds2 = open_dataset("alice/moving")  # not the copy of main cached a moment ago
    assert (ds2.revision, ds2.kind) == (second, "spd-trace") and file_hashes(ds2.path) == file_hashes(v2)
    code, out = run_cli("info", "alice/moving")
    assert code == 0 and f"alice/moving at commit {second}" in out

    online.requests.clear()
    old = open_dataset(f"alice/moving@{first}")  # a commit never moves: read from the cache, no request
    assert old.path == ds.path and old.revision == first and online.requests == []
    with caplog.at_level(logging.INFO, logger="latentbench.store.reader"):
        caplog.clear()
        assert open_dataset("alice/moving@v0.1.0").revision == first  # a tag is resolved, then cached
    assert f"alice/moving@v0.1.0: read commit {first}" in caplog.text and "WARNING" not in caplog.text

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: main as it resolved last
    online.requests.clear()
    assert open_dataset("alice/moving").revision == second and online.requests == []
    with pytest.raises(DataNotFoundError, match="alice/moving@dev: not in the cache"):
        open_dataset("alice/moving@dev")
