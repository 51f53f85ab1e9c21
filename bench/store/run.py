"""Benchmark the dataset store on real KV caches from the embedded model (SmolLM2-135M).

Node caches are slices (2..40 positions) of the KV cache the model builds over GSM8K question+answer
texts, stacked as [2, layers, kv_heads, seq, head_dim] as the latent-tree generator stores them. The
same tensors are written and read back through:

  * latentbench.store (journal + finalize into sharded Zarr), each codec, and two other inner chunk
    sizes for the default codec; with ``durable=False`` (no fsync) and the default ``durable=True``,
  * one ``np.save`` file per tensor (bfloat16 as raw uint16), without and with an fsync per file,
  * one safetensors file holding every tensor,

reporting write/read MB/s (of uncompressed tensor bytes), bytes and files on disk, and the latency of
reading one node's KV. Every format runs ``--reps`` times, interleaved, and keeps its best write and
read (the machine is shared; the best is the least disturbed). Reads hit the OS page cache (files were
just written): they measure decode cost, not the disk. Usage:
``python bench/store/run.py [--nodes 240] [--reps 2] [--out bench/results/store.json]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

DTYPES = ("float32", "bfloat16", "float16")
CODECS = ("none", "lz4", "zstd", "blosc-zstd-bitshuffle")
CHUNKS = (1 << 17, 1 << 18)  # inner chunk sizes tried besides the default, with the default codec


def gsm8k_texts(limit: int) -> list[str]:
    from latentbench.paths import data_dir

    root = data_dir() or Path(__file__).resolve().parents[3] / "shared" / "data"
    path = root / "gsm8k" / "test.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: missing; set LATENTBENCH_DATA_DIR to the benchmark data")
    rows = [json.loads(line) for line in path.read_text().splitlines()[:limit]]
    return [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in rows]


def real_kv_segments(n_nodes: int, seed: int) -> tuple[list[torch.Tensor], dict[str, Any]]:
    """``n_nodes`` float32 KV slices [2, layers, kv_heads, seq, head_dim] of varied length."""
    from latentbench.models import load_model

    lm = load_model("smollm2-135m")
    rng = np.random.default_rng(seed)
    segments: list[torch.Tensor] = []
    texts = gsm8k_texts(200)
    with torch.no_grad():
        for text in texts:
            ids = lm.tokenizer(text, return_tensors="pt")["input_ids"][:, :256]
            cache = lm.model(ids, use_cache=True).past_key_values
            keys = torch.stack([layer.keys[0] for layer in cache.layers])  # [layers, kv_heads, seq, head_dim]
            values = torch.stack([layer.values[0] for layer in cache.layers])
            kv = torch.stack([keys, values])
            pos = 0
            while pos < kv.shape[3] and len(segments) < n_nodes:
                length = int(rng.integers(2, 41))
                segments.append(kv[:, :, :, pos : pos + length].clone())
                pos += length
            if len(segments) >= n_nodes:
                break
    info = {"model": lm.model_id, "weights_sha256": lm.weights_sha256, "shape": "[2, layers, kv_heads, seq, head_dim]",
            "layers_heads_dim": list(segments[0].shape[1:3]) + [segments[0].shape[4]],
            "positions": sum(s.shape[3] for s in segments),
            "seq_min_max": [min(s.shape[3] for s in segments), max(s.shape[3] for s in segments)]}
    return segments, info


def du(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files), len(files)


def latency_ms(fn, indices: list[int]) -> dict[str, float]:
    times = []
    for i in indices:
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"median_ms": round(statistics.median(times), 3), "p90_ms": round(times[int(0.9 * len(times))], 3)}


def bench_store(tensors: list[torch.Tensor], root: Path, picks: list[int], *, codec: str, chunk: int,
                durable: bool) -> dict[str, Any]:
    from latentbench.store import DatasetWriter, open_dataset
    from latentbench.store.synthetic import INFO

    path = root / "store"
    t0 = time.perf_counter()
    w = DatasetWriter(path, kind="kv-shard", info=INFO, codec=codec, chunk_elements=chunk, durable=durable)
    for i, t in enumerate(tensors):
        with w.example(f"node/{i}") as ex:
            ex.add_array("kv", t, owner=f"nodes:{i}")
    t1 = time.perf_counter()
    w.finalize()
    t2 = time.perf_counter()
    ds = open_dataset(path)
    t3 = time.perf_counter()
    for i in range(len(tensors)):
        ds.array("kv", i)
    t4 = time.perf_counter()
    size, files = du(path / "arrays.zarr")
    shards = len(list((path / "arrays.zarr/kv/data/c").iterdir()))
    one = latency_ms(lambda i: ds.array("kv", i), picks)
    return {"write_s": t2 - t0, "finalize_s": t2 - t1, "read_s": t4 - t3, "bytes": size, "files": files,
            "shard_files": shards, "shard_elements": ds.manifest["arrays"]["kv"]["shard_elements"], **one}


def raw_numpy(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()


def bench_npy(tensors: list[torch.Tensor], root: Path, picks: list[int], fsync: bool = False,
              sha256: bool = False) -> dict[str, Any]:
    """``sha256``: also hash every byte written, as a manifest of the files needs (what the store does)."""
    path = root / "npy"
    path.mkdir()
    t0 = time.perf_counter()
    for i, t in enumerate(tensors):
        with open(path / f"{i}.npy", "wb") as f:
            raw = raw_numpy(t)
            np.save(f, raw)
            if sha256:
                hashlib.sha256(raw).hexdigest()
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    t1 = time.perf_counter()
    for i in range(len(tensors)):
        np.load(path / f"{i}.npy")
    t2 = time.perf_counter()
    size, files = du(path)
    one = latency_ms(lambda i: np.load(path / f"{i}.npy"), picks)
    return {"write_s": t1 - t0, "read_s": t2 - t1, "bytes": size, "files": files, **one}


def bench_safetensors(tensors: list[torch.Tensor], root: Path, picks: list[int]) -> dict[str, Any]:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = root / "kv.safetensors"
    t0 = time.perf_counter()
    save_file({f"kv.{i}": t.contiguous() for i, t in enumerate(tensors)}, str(path))
    t1 = time.perf_counter()
    load_file(str(path))
    t2 = time.perf_counter()

    def one(i: int) -> torch.Tensor:
        with safe_open(str(path), framework="pt") as f:
            return f.get_tensor(f"kv.{i}")

    size, files = du(path)
    return {"write_s": t1 - t0, "read_s": t2 - t1, "bytes": size, "files": files, **latency_ms(one, picks)}


def formats() -> list[tuple[str, dict[str, Any]]]:
    """(row label, bench_store arguments; empty for a baseline)."""
    from latentbench.store.arrays import DEFAULT_CHUNK_ELEMENTS, DEFAULT_CODEC

    out: list[tuple[str, dict[str, Any]]] = [
        (f"store/{c}", {"codec": c, "chunk": DEFAULT_CHUNK_ELEMENTS, "durable": False}) for c in CODECS]
    out += [(f"store/{DEFAULT_CODEC} chunk 2^{k.bit_length() - 1}",
             {"codec": DEFAULT_CODEC, "chunk": k, "durable": False}) for k in CHUNKS]
    out.append((f"store/{DEFAULT_CODEC} durable", {"codec": DEFAULT_CODEC, "chunk": DEFAULT_CHUNK_ELEMENTS,
                                                   "durable": True}))
    return out + [("np.save", {}), ("np.save + sha256", {}), ("np.save + fsync", {}), ("safetensors", {})]


def run(n_nodes: int, seed: int, reads: int, reps: int, workdir: Path) -> dict[str, Any]:
    import jsonschema  # noqa: F401  imported up front so that no timed run pays for imports
    import polars  # noqa: F401
    import safetensors.torch  # noqa: F401
    import zarr  # noqa: F401

    from latentbench.store.arrays import DEFAULT_SHARD_BYTES

    base, kv_info = real_kv_segments(n_nodes, seed)
    picks = [int(i) for i in np.random.default_rng(seed).integers(0, len(base), reads)]
    rows = []
    for dtype in DTYPES:
        tensors = [t.to(getattr(torch, dtype)) for t in base]
        raw = sum(t.numel() * t.element_size() for t in tensors)
        best: dict[str, dict[str, Any]] = {}
        for _ in range(reps):
            for label, kw in formats():
                if kw:
                    r = bench_store(tensors, workdir, picks, **kw)
                elif label.startswith("np.save"):
                    r = bench_npy(tensors, workdir, picks, fsync=label.endswith("fsync"),
                                  sha256=label.endswith("sha256"))
                else:
                    r = bench_safetensors(tensors, workdir, picks)
                for p in workdir.iterdir():
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
                b = best.setdefault(label, r)
                for key in ("write_s", "read_s", "median_ms", "p90_ms"):
                    b[key] = min(b[key], r[key])
        for label, r in best.items():
            row = {"dtype": dtype, "format": label, "raw_bytes": raw,
                   "write_MBps": round(raw / r["write_s"] / 1e6, 1), "read_MBps": round(raw / r["read_s"] / 1e6, 1),
                   "ratio": round(raw / r["bytes"], 3), **{k: round(v, 4) if isinstance(v, float) else v
                                                          for k, v in r.items()}}
            if "shard_elements" in r:  # shard files a dataset of such nodes needs per 1,000 nodes (full shards;
                # this run's array is smaller than one shard, so its one shard is cut to the array's size)
                row["files_per_1000_nodes"] = round(1000 * raw / len(tensors) / DEFAULT_SHARD_BYTES, 2)
            rows.append(row)
        goal(rows, dtype)
    return {"kv": {**kv_info, "nodes": len(base)}, "reads_for_latency": reads, "reps": reps, "rows": rows,
            "shard_bytes": DEFAULT_SHARD_BYTES,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "torch_threads": torch.get_num_threads(), "load_avg": os.getloadavg()}}


def goal(rows: list[dict[str, Any]], dtype: str) -> None:
    """The issue's ratios, on the default store rows of ``dtype``: write MB/s against np.save's (fsync
    against fsync; and against np.save + sha256, since the store hashes every byte for its manifest),
    one node's median read latency against safetensors'."""
    from latentbench.store.arrays import DEFAULT_CODEC

    by = {r["format"]: r for r in rows if r["dtype"] == dtype}
    for label, base in ((f"store/{DEFAULT_CODEC}", "np.save"), (f"store/{DEFAULT_CODEC} durable", "np.save + fsync")):
        r = by[label]
        r["write_vs_np_save"] = round(r["write_MBps"] / by[base]["write_MBps"], 2)
        if base == "np.save":
            r["write_vs_np_save_sha256"] = round(r["write_MBps"] / by["np.save + sha256"]["write_MBps"], 2)
        r["read_one_vs_safetensors"] = round(r["median_ms"] / by["safetensors"]["median_ms"], 2)


def render(result: dict[str, Any]) -> str:
    kv = result["kv"]
    head = (f"{kv['nodes']} node KV caches from {kv['model']} ({kv['positions']} positions, seq "
            f"{kv['seq_min_max'][0]}..{kv['seq_min_max'][1]}, [2, layers, kv_heads, seq, head_dim] with "
            f"layers, kv_heads, head_dim = {kv['layers_heads_dim']}); {result['machine']['cpus']} CPUs, load "
            f"{result['machine']['load_avg'][0]:.1f}, warm page cache, best of {result['reps']}")
    lines = [head, "", "| dtype | format | raw MB | on disk MB | ratio | files | shard files / 1,000 nodes | "
             "write MB/s | write / np.save | write / np.save + sha256 | read MB/s | one node: median ms | p90 ms | one node / safetensors |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['dtype']} | {r['format']} | {r['raw_bytes'] / 1e6:.1f} | {r['bytes'] / 1e6:.1f} | "
                     f"{r['ratio']:.2f} | {r['files']} | {r.get('files_per_1000_nodes', '')} | "
                     f"{r['write_MBps']:.0f} | {r.get('write_vs_np_save', '')} | {r.get('write_vs_np_save_sha256', '')} | "
                     f"{r['read_MBps']:.0f} | "
                     f"{r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r.get('read_one_vs_safetensors', '')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=240, help="node caches to build (>= 200 for the report)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reads", type=int, default=50, help="random single-node reads for the latency")
    parser.add_argument("--reps", type=int, default=2, help="runs of each format (interleaved); the best is kept")
    parser.add_argument("--out", default="bench/results/store.json")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="lb-store-bench-") as tmp:
        result = run(args.nodes, args.seed, args.reads, args.reps, Path(tmp))
    print(render(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
