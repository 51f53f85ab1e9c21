"""Every dataset kind passes the shared conformance suite (latentbench.store.testing.DatasetKindTests)."""

from __future__ import annotations

from latentbench.store.testing import DatasetKindTests


class TestLatentTree(DatasetKindTests):
    kind = "latent-tree"
    extra_kinds = ("kv-shard",)  # node KV caches (bfloat16) live in the kv-shard array "kv"


class TestLatentTreeWithoutKV(DatasetKindTests):
    kind = "latent-tree"


class TestKVShard(DatasetKindTests):
    kind = "kv-shard"


class TestHaltingSegment(DatasetKindTests):
    kind = "halting-segment"


class TestSPDTrace(DatasetKindTests):
    kind = "spd-trace"


class TestGraphTrace(DatasetKindTests):
    kind = "graph-trace"
