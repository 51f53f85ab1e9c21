"""Latent-PRM scoring throughput per head against the generator's own forward passes on the same paths.

Paths are the depth >= 1 nodes of a latent-tree dataset made by the generator (default: the embedded
default model). For each head (untrained: throughput does not depend on the weights) it scores every
path in batches, exactly as training and ``--prm`` scoring collate them (``PrmTrainer.collate``); the
baseline is one generator forward on each path's cache (one decoding step from the path, the unit cost
of growing or decoding a tree), batched the same way. Rows run interleaved, ``--repeats`` times; the
table gives paths/s and the ratio to the generator. Usage:

    python bench/prm/run.py data/tau/tau-0.5 [--heads mlp,backbone,kv] [--batch-size 16] [--out bench/results/prm.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch


def main() -> None:
    from latentbench.methods.latent_tree.prm import PrmConfig, PrmTrainer
    from latentbench.models import load_model
    from latentbench.models.latent import run_body
    from latentbench.train.data import TrainData

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--heads", default="mlp,backbone,kv")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=64, help="paths scored per repeat")
    parser.add_argument("--out", default="bench/results/prm.json")
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    data = TrainData([args.dataset], "nodes", val_fraction=0.0, where=PrmTrainer.keep_row)
    rows = data.rows("train")[: args.limit]
    generator_id = data.datasets[0].manifest["model"]["id"]
    generator = load_model(generator_id)
    runners: dict[str, Any] = {}
    for head in args.heads.split(","):
        trainer = PrmTrainer(PrmConfig(head=head, backbone=generator_id, batch_size=args.batch_size))
        module = trainer.build(data).eval()
        batches = [trainer.collate(rows[i:i + args.batch_size], data) for i in range(0, len(rows), args.batch_size)]
        runners[f"prm {head}"] = (lambda m=module, b=batches: [m(x) for x in b])
    kv_trainer = PrmTrainer(PrmConfig(head="kv", backbone=generator_id))  # its collate gives the paths' KV
    kv_batches = [kv_trainer.collate(rows[i:i + args.batch_size], data) for i in range(0, len(rows), args.batch_size)]
    body, head = generator.model.base_model, generator.model.get_output_embeddings()
    token = generator.tokenizer(" ", add_special_tokens=False)["input_ids"][:1]

    def generator_step() -> list[torch.Tensor]:
        from transformers import DynamicCache

        outs = []
        for batch in kv_batches:
            kv = batch["kv"].to(generator.model.dtype)
            cache = DynamicCache(config=generator.model.config)
            for layer in range(kv.shape[2]):
                cache.update(kv[:, 0, layer], kv[:, 1, layer], layer)
            ids = torch.tensor([token] * kv.shape[0])
            out = run_body(body, torch.cat([batch["mask"], torch.ones_like(ids)], 1), cache=cache, input_ids=ids)
            outs.append(head(out.last_hidden_state[:, -1]))
        return outs

    runners["generator forward"] = generator_step
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, run in runners.items():  # interleaved, so load drifts hit every row alike
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    base = len(rows) / statistics.median(times["generator forward"])
    table = []
    for name, spent in times.items():
        rate = len(rows) / statistics.median(spent)
        table.append({"row": name, "paths_per_s": rate, "vs_generator": rate / base})
    print(f"{len(rows)} paths of {args.dataset} (generator {generator_id}), batch {args.batch_size}, "
          f"median of {args.repeats}")
    print("| row | paths/s | × generator forward |\n|---|---|---|")
    for row in table:
        print(f"| {row['row']} | {row['paths_per_s']:.1f} | {row['vs_generator']:.2f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "paths": len(rows), "rows": table,
                               "machine": platform.platform(), "threads": torch.get_num_threads()}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
