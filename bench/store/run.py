"""Benchmark the dataset store on real KV caches from the embedded model (SmolLM2-135M).

Node caches are slices (2..40 positions) of the KV cache the model builds over GSM8K question+answer
texts, stacked as [2, layers, kv_heads, seq, head_dim] as the latent-tree generator stores them. The
same tensors are written and read back through:

  * latentbench.store (journal + finalize into Zarr, each codec),
  * one ``np.save`` file per tensor (bfloat16 as raw uint16),
  * one safetensors file holding every tensor,

reporting write/read MB/s (of uncompressed tensor bytes), bytes on disk, and the latency of reading
one node's KV. Reads hit the OS page cache (files were just written): they measure decode cost, not
the disk. Usage: ``python bench/store/run.py [--nodes 240] [--out bench/results/store.json]``.
"""

from __future__ import annotations

import argparse
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
CODECS = ("blosc-zstd-bitshuffle", "zstd")


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


def bench_store(tensors: list[torch.Tensor], codec: str, root: Path, picks: list[int]) -> dict[str, Any]:
    from latentbench.store import DatasetWriter, open_dataset
    from latentbench.store.synthetic import INFO

    path = root / f"store-{codec}"
    t0 = time.perf_counter()
    w = DatasetWriter(path, kind="kv-shard", info=INFO, codec=codec)
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
    total, _ = du(path)
    one = latency_ms(lambda i: ds.array("kv", i), picks)
    return {"write_s": t2 - t0, "finalize_s": t2 - t1, "read_s": t4 - t3, "bytes": size, "dataset_bytes": total,
            "files": files, **one}


def raw_numpy(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()


def bench_npy(tensors: list[torch.Tensor], root: Path, picks: list[int]) -> dict[str, Any]:
    path = root / "npy"
    path.mkdir()
    t0 = time.perf_counter()
    for i, t in enumerate(tensors):
        np.save(path / f"{i}.npy", raw_numpy(t))
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


def run(n_nodes: int, seed: int, reads: int, workdir: Path) -> dict[str, Any]:
    import jsonschema  # noqa: F401  imported up front so that no timed run pays for imports
    import polars  # noqa: F401
    import safetensors.torch  # noqa: F401
    import zarr  # noqa: F401

    base, kv_info = real_kv_segments(n_nodes, seed)
    picks = [int(i) for i in np.random.default_rng(seed).integers(0, len(base), reads)]
    rows = []
    for dtype in DTYPES:
        tensors = [t.to(getattr(torch, dtype)) for t in base]
        raw = sum(t.numel() * t.element_size() for t in tensors)
        runs = [*(f"store/{c}" for c in CODECS), "np.save", "safetensors"]
        for fmt in runs:
            if fmt.startswith("store/"):
                r = bench_store(tensors, fmt.removeprefix("store/"), workdir, picks)
            elif fmt == "np.save":
                r = bench_npy(tensors, workdir, picks)
            else:
                r = bench_safetensors(tensors, workdir, picks)
            rows.append({"dtype": dtype, "format": fmt, "raw_bytes": raw,
                         "write_MBps": round(raw / r["write_s"] / 1e6, 1), "read_MBps": round(raw / r["read_s"] / 1e6, 1),
                         "ratio": round(raw / r["bytes"], 3), **{k: round(v, 4) if isinstance(v, float) else v
                                                                for k, v in r.items()}})
            for p in workdir.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    return {"kv": {**kv_info, "nodes": len(base)}, "reads_for_latency": reads, "rows": rows,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "torch_threads": torch.get_num_threads()}}


def render(result: dict[str, Any]) -> str:
    kv = result["kv"]
    head = (f"{kv['nodes']} node KV caches from {kv['model']} ({kv['positions']} positions, seq "
            f"{kv['seq_min_max'][0]}..{kv['seq_min_max'][1]}, [2, layers, kv_heads, seq, head_dim] with "
            f"layers, kv_heads, head_dim = {kv['layers_heads_dim']}); {result['machine']['cpus']} CPUs, warm page cache")
    lines = [head, "", "| dtype | format | raw MB | on disk MB | ratio | files | write MB/s | read MB/s | "
             "one node: median ms | p90 ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['dtype']} | {r['format']} | {r['raw_bytes'] / 1e6:.1f} | {r['bytes'] / 1e6:.1f} | "
                     f"{r['ratio']:.2f} | {r['files']} | {r['write_MBps']:.0f} | {r['read_MBps']:.0f} | "
                     f"{r['median_ms']:.2f} | {r['p90_ms']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=240, help="node caches to build (>= 200 for the report)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reads", type=int, default=50, help="random single-node reads for the latency")
    parser.add_argument("--out", default="bench/results/store.json")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="lb-store-bench-") as tmp:
        result = run(args.nodes, args.seed, args.reads, Path(tmp))
    print(render(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
