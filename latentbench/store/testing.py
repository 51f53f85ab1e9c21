"""Conformance tests every dataset kind inherits, in the spirit of zarr's ``StoreTests``.

    class TestLatentTree(DatasetKindTests):
        kind = "latent-tree"
        extra_kinds = ("kv-shard",)
        # optional: def write_example(self, ex, i) -> Expected   (default: synthetic.WRITERS[kind])

Covers: the kind's schema file is a well-formed, fully documented JSON Schema; records validate and
a broken one is refused without being committed; synthetic records round-trip (tables equal, tensors
bit-exact, bfloat16 included) through write -> validate -> open; ``datasets.load_dataset(dir, table)``
loads every table; a writer closed half-way and resumed produces the same bytes as a single run.
Needs pytest (a dev dependency); import it from tests only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from latentbench.errors import SchemaError
from latentbench.store.manifest import list_files
from latentbench.store.reader import open_dataset
from latentbench.store.schema import COLUMN_KEYWORDS, available_kinds, load_kind
from latentbench.store.synthetic import INFO, WRITERS, Expected
from latentbench.store.validate import validate_dataset
from latentbench.store.writer import DatasetWriter, ExampleWriter


def assert_bit_exact(actual: Any, expected: Any, what: str = "tensor") -> None:
    """Same dtype, shape and bytes (compares bit patterns, so NaN payloads and -0 count)."""
    if type(expected).__module__.startswith("torch"):
        import torch

        assert isinstance(actual, torch.Tensor), f"{what}: expected a torch tensor, got {type(actual)}"
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
        assert actual.contiguous().view(torch.int16 if actual.element_size() == 2 else torch.int32).equal(
            expected.contiguous().view(torch.int16 if expected.element_size() == 2 else torch.int32)), what
    else:
        assert isinstance(actual, np.ndarray), f"{what}: expected numpy, got {type(actual)}"
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
        assert actual.tobytes() == np.ascontiguousarray(expected).tobytes(), what


def file_hashes(root: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest()
            for rel in [*list_files(root), "manifest.json"]}


class DatasetKindTests:
    kind: ClassVar[str]
    extra_kinds: ClassVar[tuple[str, ...]] = ()
    n_examples: ClassVar[int] = 5
    writer_kwargs: ClassVar[dict[str, Any]] = {"chunk_elements": 64}  # tiny chunks: many per array

    def write_example(self, ex: ExampleWriter, i: int) -> Expected:
        return WRITERS[self.kind](ex, i)

    def write(self, path: Path, indices: range) -> tuple[DatasetWriter, list[Expected]]:
        w = DatasetWriter(path, kind=self.kind, info=INFO, extra_kinds=list(self.extra_kinds), **self.writer_kwargs)
        out = []
        for i in indices:
            with w.example(f"{self.kind}/test/{i}") as ex:
                out.append(self.write_example(ex, i))
        return w, out

    @pytest.fixture(scope="class")
    @classmethod
    def written(cls, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Expected]]:
        """The kind's dataset, written once per test class."""
        path = tmp_path_factory.mktemp(cls.kind) / "ds"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SOURCE_DATE_EPOCH", "1700000000")
            w, expected = cls().write(path, range(cls.n_examples))
            w.finalize()
        return path, expected

    # -- schema ------------------------------------------------------------------------------------
    def test_schema_is_documented_json_schema(self) -> None:
        import jsonschema

        spec = load_kind(self.kind)
        jsonschema.Draft202012Validator.check_schema(spec.schema)
        all_arrays = {a for k in available_kinds() for a in load_kind(k).arrays}
        assert spec.tables or spec.arrays
        for table in spec.tables.values():
            assert table.row_schema.get("additionalProperties") is False, table.name
            assert "example_id" in table.required and set(table.key) <= table.required, table.name
            for col, cs in table.columns.items():
                assert cs.get("description") and cs.get("unit"), f"{table.name}.{col} lacks description/unit"
                assert set(cs) <= COLUMN_KEYWORDS, f"{table.name}.{col} uses {set(cs) - COLUMN_KEYWORDS}"
                if "x-array" in cs:
                    assert cs["x-array"] in all_arrays, f"{table.name}.{col} points at an unknown array"
        for arr in spec.arrays.values():
            assert arr.description and arr.axes and arr.dtypes
            assert arr.index_table is None or arr.index_table in spec.tables

    def test_bad_record_is_refused_and_not_committed(self, tmp_path: Path) -> None:
        w, _ = self.write(tmp_path / "ds", range(1))
        table = next(iter(load_kind(self.kind).tables.values()))
        bad_col = sorted(table.required - {"example_id"})[0]
        with pytest.raises(SchemaError, match=bad_col), w.example("bad") as ex:
            self.write_example(ex, 1)
            ex.rows[table.name][0][bad_col] = {"not": "a valid value"}
        assert w.completed_ids() == {f"{self.kind}/test/0"}
        w.finalize()
        assert validate_dataset(tmp_path / "ds") == []
        assert open_dataset(tmp_path / "ds").manifest["counts"]["examples"] == 1

    # -- round trip --------------------------------------------------------------------------------
    def test_round_trip(self, written: tuple[Path, list[Expected]]) -> None:
        path, expected = written
        assert validate_dataset(path) == []
        ds = open_dataset(path)
        assert ds.kind == self.kind and set(ds.manifest["kinds"]) == {self.kind, *self.extra_kinds}
        assert ds.manifest["counts"]["examples"] == self.n_examples
        for table in {t for e in expected for t in e["tables"]}:
            spec = ds.table_spec(table)
            want = [{c: r.get(c) for c in spec.columns} for e in expected for r in e["tables"][table]]
            want.sort(key=lambda r: tuple(r[k] for k in spec.key))
            assert ds.table(table).to_dicts() == want, table
        for name in {a for e in expected for a in e["arrays"]}:
            items = [item for e in expected for item in e["arrays"].get(name, [])]
            assert [ref for ref, _ in items] == list(range(len(items))) == list(range(ds.array_len(name)))
            for ref, tensor in items:
                assert_bit_exact(ds.array(name, ref), tensor, f"{name}[{ref}]")

    def test_load_dataset_reads_every_table(self, written: tuple[Path, list[Expected]]) -> None:
        import datasets

        path, _ = written
        ds = open_dataset(path)
        filled = [t for t in ds.tables if ds.manifest["counts"]["tables"][t]]
        assert filled, "the synthetic examples should fill at least one table"
        for table in filled:
            hf = datasets.load_dataset(str(path), table, split=ds.manifest["split"])
            assert hf.num_rows == ds.manifest["counts"]["tables"][table]
            assert hf.to_list() == ds.table(table).to_dicts(), table
            assert ds.to_hf(table).to_list() == hf.to_list(), table

    # -- resume ------------------------------------------------------------------------------------
    def test_resume_gives_identical_bytes(self, written: tuple[Path, list[Expected]], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
        half = self.n_examples // 2
        w, _ = self.write(tmp_path / "ds", range(half))
        w.close()  # as if the process ended here
        w, _ = self.write(tmp_path / "ds", range(half, self.n_examples))
        assert len(w.completed_ids()) == self.n_examples
        w.finalize()
        assert file_hashes(tmp_path / "ds") == file_hashes(written[0])
