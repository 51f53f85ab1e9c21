"""DatasetWriter: atomic examples, argument checks, resume and refusal to overwrite."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentbench.errors import LatentbenchError, SchemaError, UsageError
from latentbench.store import DatasetWriter, open_dataset, validate_dataset
from latentbench.store.synthetic import (
    INFO,
    make_synthetic_dataset,
    write_kv_shard,
    write_latent_tree,
    write_spd_trace,
)
from latentbench.store.testing import file_hashes


def _node(**kw):
    return {"node_id": 0, "parent_id": None, "agent_index": 0, "depth": 0, "branch_index": 0, "role": "root",
            "n_leaves": 0, "n_correct": 0, "value": None, "label": None, **kw}


@pytest.fixture
def writer(tmp_path):
    w = DatasetWriter(tmp_path / "ds", kind="latent-tree", info=INFO, extra_kinds=["kv-shard"])
    yield w
    w.close()


def test_exception_inside_example_leaves_nothing(writer, tmp_path):
    with pytest.raises(RuntimeError), writer.example("a") as ex:
        ex.add_array("latent", np.ones((2, 8), np.float16))
        ex.add_rows("nodes", [_node()])
        raise RuntimeError("model crashed")
    assert writer.completed_ids() == set()
    with writer.example("b") as ex:  # indices restart where the committed data ends
        assert ex.add_array("latent", np.ones((1, 8), np.float16)) == 0
        ex.add_rows("nodes", [_node(latent_ref=0)])
    writer.finalize()
    ds = open_dataset(tmp_path / "ds")
    assert ds.manifest["counts"] == {"examples": 1, "tables": {"trees": 0, "nodes": 1, "kv_segments": 0},
                                     "arrays": {"latent": 1}}
    assert ds.table("nodes")["example_id"].to_list() == ["b"]


def test_empty_tables_are_readable_and_left_out_of_the_card(writer, tmp_path):
    import datasets

    with writer.example("a") as ex:
        ex.add_rows("nodes", [_node()])
    writer.finalize()
    ds = open_dataset(tmp_path / "ds")
    assert ds.table("trees").height == 0 and ds.table("kv_segments").height == 0
    card = (tmp_path / "ds" / "README.md").read_text()
    assert "config_name: nodes" in card and "config_name: trees" not in card  # load_dataset rejects empty splits
    assert datasets.load_dataset(str(tmp_path / "ds"), split="test").num_rows == 1  # default config: nodes


def test_array_indices_are_global_and_returned(writer, tmp_path):
    refs = []
    for eid in ("a", "b"):
        with writer.example(eid) as ex:
            refs.append([ex.add_array("latent", np.full((1, 8), len(refs), np.float16)) for _ in range(2)])
    assert refs == [[0, 1], [2, 3]]
    writer.finalize()
    ds = open_dataset(tmp_path / "ds")
    assert [float(ds.array("latent", i)[0, 0]) for i in range(4)] == [0, 0, 1, 1]


@pytest.mark.parametrize(("call", "message"), [
    (lambda ex: ex.add_rows("leaves", [{}]), "table 'leaves' is not defined"),
    (lambda ex: ex.add_array("kv2", np.zeros(3)), "array 'kv2' is not defined"),
    (lambda ex: ex.add_array("latent", np.zeros((2, 8), np.int64)), "takes float32, float16, bfloat16"),
    (lambda ex: ex.add_array("latent", np.zeros(8, np.float16)), "2-d"),
    (lambda ex: ex.add_array("latent", [1.0, 2.0]), "numpy arrays or torch tensors"),
    (lambda ex: ex.add_rows("nodes", _node()), "list of rows"),
])
def test_bad_calls_raise_usage_errors(writer, call, message):
    with pytest.raises(UsageError, match=message), writer.example("a") as ex:
        call(ex)
    assert writer.completed_ids() == set()


def test_one_dtype_per_array(writer):
    with writer.example("a") as ex:
        ex.add_array("latent", np.zeros((1, 8), np.float16))
    with pytest.raises(UsageError, match="holds float16; got float32"), writer.example("b") as ex:
        ex.add_array("latent", np.zeros((1, 8), np.float32))


@pytest.mark.parametrize(("row", "message"), [
    (_node(latent_ref=5), "latent_ref=5 but array 'latent' has only 1 items"),
    (_node(depth="deep"), "'deep' is not of type 'integer'"),
    (_node(value=1.5), "1.5 is greater than the maximum of 1"),
    (_node(colour="red"), "Additional properties are not allowed"),
    ({"node_id": 0}, "'parent_id' is a required property"),
])
def test_rows_are_checked_on_commit(writer, row, message):
    with pytest.raises(SchemaError, match=message), writer.example("a") as ex:
        ex.add_array("latent", np.zeros((1, 8), np.float16))
        ex.add_rows("nodes", [row])
    assert writer.completed_ids() == set()


def test_duplicate_keys_and_ids_are_refused(writer):
    with pytest.raises(SchemaError, match="duplicate nodes key"), writer.example("a") as ex:
        ex.add_rows("nodes", [_node(), _node()])
    with writer.example("a") as ex:
        ex.add_rows("nodes", [_node()])
    with pytest.raises(UsageError, match="already committed"), writer.example("a"):
        pass


def test_ref_to_array_of_a_missing_kind_is_refused(tmp_path):
    w = DatasetWriter(tmp_path / "ds", kind="latent-tree", info=INFO)
    with pytest.raises(SchemaError, match="add its kind to extra_kinds"), w.example("a") as ex:
        ex.add_rows("nodes", [_node(kv_ref=0)])


def test_numpy_scalars_in_rows_are_accepted(writer, tmp_path):
    with writer.example("a") as ex:
        ex.add_rows("nodes", [_node(node_id=np.int64(0), n_leaves=np.int32(1), n_correct=1,
                                    value=np.float32(1.0), label=np.bool_(True))])
    writer.finalize()
    row = open_dataset(tmp_path / "ds").table("nodes").row(0, named=True)
    assert (row["n_leaves"], row["value"], row["label"]) == (1, 1.0, True)


def test_unknown_kind_and_bad_info(tmp_path):
    with pytest.raises(UsageError, match="unknown dataset kind 'latent-forest'"):
        DatasetWriter(tmp_path / "a", kind="latent-forest", info=INFO)
    with pytest.raises(UsageError, match="missing version"):
        DatasetWriter(tmp_path / "b", kind="spd-trace", info={k: v for k, v in INFO.items() if k != "version"})
    with pytest.raises(UsageError, match="dataset info version: '1.0' does not match"):
        DatasetWriter(tmp_path / "c", kind="spd-trace", info={**INFO, "version": "1.0"})
    with pytest.raises(UsageError, match="dataset info model/sha256"):
        DatasetWriter(tmp_path / "d", kind="spd-trace", info={**INFO, "model": {"id": "m", "sha256": "xyz"}})
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_resume_with_other_arguments_is_refused(tmp_path):
    w = DatasetWriter(tmp_path / "ds", kind="kv-shard", info=INFO)
    with w.example("a") as ex:
        write_kv_shard(ex, 0)
    w.close()
    with pytest.raises(UsageError, match="different info"):
        DatasetWriter(tmp_path / "ds", kind="kv-shard", info={**INFO, "seed": 1})
    assert DatasetWriter(tmp_path / "ds", kind="kv-shard", info=INFO).completed_ids() == {"a"}


def test_second_writer_on_same_dir_is_refused(tmp_path):
    w = DatasetWriter(tmp_path / "ds", kind="kv-shard", info=INFO)
    with pytest.raises(UsageError, match="another writer"):
        DatasetWriter(tmp_path / "ds", kind="kv-shard", info=INFO)
    w.close()


def test_never_writes_into_a_foreign_directory(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        DatasetWriter(tmp_path / "ds", kind="kv-shard", info=INFO)
    assert [p.name for p in (tmp_path / "ds").iterdir()] == ["notes.txt"]


def test_finalized_dataset_is_never_rewritten(tmp_path):
    make_synthetic_dataset(tmp_path / "ds", "kv-shard", n=3)
    before = file_hashes(tmp_path / "ds")
    w = DatasetWriter(tmp_path / "ds", kind="kv-shard", info=INFO)  # same args: a finished run
    assert w.finalized and w.completed_ids() == {f"synthetic/test/{i}" for i in range(3)}
    with pytest.raises(UsageError, match="finalized"), w.example("new"):
        pass
    assert w.finalize()["counts"]["examples"] == 3
    with pytest.raises(UsageError, match="different version"):
        DatasetWriter(tmp_path / "ds", kind="kv-shard", info={**INFO, "version": "0.2.0"})
    assert file_hashes(tmp_path / "ds") == before


def test_stray_temp_files_and_half_finalized_output_are_recovered(tmp_path, monkeypatch):
    """What a kill leaves behind (a half-written entry, half-moved output) is cleaned up on resume."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    make_synthetic_dataset(tmp_path / "ref", "latent-tree", n=3, extra_kinds=("kv-shard",))
    w = DatasetWriter(tmp_path / "ds", kind="latent-tree", info=INFO, extra_kinds=["kv-shard"])
    for i in range(2):
        with w.example(f"synthetic/test/{i}") as ex:
            write_latent_tree(ex, i)
    w.close()
    journal = tmp_path / "ds" / ".journal"
    (journal / ".tmp-00000002-999").write_bytes(b"LBJ1 half an example")
    (tmp_path / "ds" / "tables" / "nodes").mkdir(parents=True)
    (tmp_path / "ds" / "tables" / "nodes" / "stale.parquet").write_bytes(b"PAR1")
    (tmp_path / "ds" / "README.md").write_text("stale")
    make_synthetic_dataset(tmp_path / "ds", "latent-tree", n=3, extra_kinds=("kv-shard",))
    assert validate_dataset(tmp_path / "ds") == []
    assert file_hashes(tmp_path / "ds") == file_hashes(tmp_path / "ref")


def test_manifest_records_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    m = make_synthetic_dataset(tmp_path / "ds", "spd-trace", n=2)
    assert m["created"] == "1970-01-01T00:00:00Z"
    assert m["license"] == "mit" and m["model"] == {"id": "synthetic-model", "sha256": "ab" * 32, "revision": None}
    assert m["packages"]["polars"] and m["packages"]["zarr"].startswith("3.1")
    assert m["counts"]["examples"] == 2 and set(m["arrays"]) == {"features"}
    on_disk = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    tables = {f for t in ("steps", "mismatches", "traces") for f in m["tables"][t]["files"]}
    assert on_disk == m and {"README.md", *tables} <= set(m["files"])
    assert all(f in tables or f == "README.md" or f.startswith("arrays.zarr/") for f in m["files"])
    card = (tmp_path / "ds" / "README.md").read_text()
    assert card.startswith("---\n") and "\nlicense: mit\n" in card and "config_name: steps" in card
    assert "size_categories:\n- n<1K" in card


def test_card_is_a_hub_dataset_card_with_the_task_metadata(tmp_path):
    from huggingface_hub import DatasetCard

    make_synthetic_dataset(tmp_path / "synthetic", "spd-trace", n=1)
    data = DatasetCard.load(tmp_path / "synthetic" / "README.md").data
    assert (data.language, data.task_categories, data.source_datasets) == (["en"], ["text-generation"], ["original"])

    w = DatasetWriter(tmp_path / "gsm8k", kind="spd-trace", info={**INFO, "task": "gsm8k"})
    with w.example("e0") as ex:
        write_spd_trace(ex, 0)
    w.finalize()
    card = DatasetCard.load(tmp_path / "gsm8k" / "README.md")
    data = card.data
    assert data.language == ["en"] and data.license == "mit" and data.size_categories == ["n<1K"]
    assert data.task_categories == ["question-answering", "text-generation"]
    assert data.source_datasets == ["extended|openai/gsm8k"]  # the Hub id in tasks/gsm8k.yaml
    assert data.pretty_name == "gsm8k spd-trace (synthetic-model)" and "latentbench" in data.tags
    assert [c["config_name"] for c in data.configs] == ["steps", "traces", "mismatches"] and data.configs[0]["default"]
    assert card.text.lstrip().startswith("# gsm8k spd-trace (synthetic-model)")


def test_errors_are_one_line():
    err = UsageError("x")
    assert isinstance(err, LatentbenchError) and "\n" not in str(err)


def test_journal_writes_run_behind_the_caller_and_finalize_waits_for_them(tmp_path, monkeypatch):
    """Commits return while the journal write is still blocked (the model can compute meanwhile);
    finalize waits for every queued example, and the result equals a plain run's."""
    import threading

    from latentbench.store.journal import Journal

    gate, written = threading.Event(), []
    commit = Journal.commit

    def slow_commit(self, seq, header, arrays):
        gate.wait(timeout=60)
        written.append(seq)
        return commit(self, seq, header, arrays)

    monkeypatch.setattr(Journal, "commit", slow_commit)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    w = DatasetWriter(tmp_path / "bg", kind="latent-tree", info=INFO, extra_kinds=["kv-shard"])
    for i in range(2):  # the queue holds 2 examples (and the thread one more): none of these block
        with w.example(f"synthetic/test/{i}") as ex:
            write_latent_tree(ex, i)
    assert written == [] and w.completed_ids() == {"synthetic/test/0", "synthetic/test/1"}
    gate.set()
    w.finalize()
    assert written == [0, 1]
    monkeypatch.setattr(Journal, "commit", commit)
    make_synthetic_dataset(tmp_path / "plain", "latent-tree", n=2, extra_kinds=("kv-shard",))
    assert file_hashes(tmp_path / "bg") == file_hashes(tmp_path / "plain")


def test_a_failed_background_journal_write_is_raised_by_the_next_call(tmp_path, monkeypatch):
    from latentbench.store.journal import Journal

    def full_disk(self, seq, header, arrays):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Journal, "commit", full_disk)
    w = DatasetWriter(tmp_path / "ds", kind="kv-shard", info=INFO)
    with w.example("e0") as ex:
        write_kv_shard(ex, 0)
    with pytest.raises(OSError, match="No space left"):
        w.finalize()
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_close_writes_the_queued_examples_before_releasing(tmp_path, monkeypatch):
    """What generate does on an error or Ctrl-C: examples already committed reach the journal, so a
    resumed run redoes none of them."""
    import time

    from latentbench.store.journal import Journal

    commit = Journal.commit

    def slow_commit(self, seq, header, arrays):
        time.sleep(0.2)
        return commit(self, seq, header, arrays)

    monkeypatch.setattr(Journal, "commit", slow_commit)
    w = DatasetWriter(tmp_path / "ds", kind="kv-shard", info=INFO)
    for i in range(3):
        with w.example(f"e{i}") as ex:
            write_kv_shard(ex, i)
    w.close()
    assert len(list((tmp_path / "ds" / ".journal").glob("*.lbj"))) == 3
    assert DatasetWriter(tmp_path / "ds", kind="kv-shard", info=INFO).completed_ids() == {"e0", "e1", "e2"}
