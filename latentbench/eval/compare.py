"""Paired comparison of two results records on the questions they share.

Both runs answered the same questions, so the comparison is paired: per question, the first sample's
verdict under one variant in A and in B. The difference B − A gets a paired percentile bootstrap
interval (questions resampled with replacement, the same resample for both runs), and McNemar's exact
test asks whether the discordant questions (one run right, the other wrong) split unevenly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentbench.errors import UsageError

RESAMPLES = 10_000
LEVEL = 0.95
CHUNK = 1_000  # resamples drawn per batch, so memory stays ~CHUNK x n whatever n is


@dataclass(frozen=True)
class Disagreement:
    id: str
    right: str  # "A" or "B": the run that got this question right
    extracted_a: Any  # the extracted answer under the variant (code: the program)
    extracted_b: Any
    gold: Any


@dataclass(frozen=True)
class Comparison:
    a: str  # record paths
    b: str
    label_a: str  # "method (model)"
    label_b: str
    task: str
    split: str
    answer_kind: str
    variant: str
    n: int  # shared questions
    only_a: int  # questions A has and B lacks
    only_b: int
    accuracy_a: float
    accuracy_b: float
    difference: float  # B − A
    interval: tuple[float, float]  # paired bootstrap of the difference
    a_only_right: int  # McNemar's b: A right, B wrong
    b_only_right: int  # McNemar's c: A wrong, B right
    p_value: float  # McNemar exact, two-sided
    seed: int
    resamples: int
    level: float
    disagreements: list[Disagreement]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["interval"] = list(self.interval)
        return out

    def render(self, limit: int = 20) -> str:
        pct = f"{self.level:.0%}"
        lines = [
            f"{self.task}/{self.split}, variant {self.variant}: {self.n} shared questions "
            f"({self.only_a} only in A, {self.only_b} only in B)",
            f"A  accuracy {self.accuracy_a:.4f}  {self.label_a}  {self.a}",
            f"B  accuracy {self.accuracy_b:.4f}  {self.label_b}  {self.b}",
            f"B - A  {self.difference:+.4f}, {pct} paired bootstrap interval [{self.interval[0]:+.4f}, "
            f"{self.interval[1]:+.4f}] ({self.resamples} resamples, seed {self.seed})",
            f"McNemar exact test: A right/B wrong {self.a_only_right}, A wrong/B right {self.b_only_right}, "
            f"p = {self.p_value:.4g}",
        ]
        if self.disagreements:
            lines.append(f"disagreements ({len(self.disagreements)}):")
            width = max(len(d.id) for d in self.disagreements[:limit])
            for d in self.disagreements[:limit]:
                line = f"  {d.id:<{width}}  {d.right} right"
                if self.answer_kind != "code":  # programs and canonical solutions do not fit on a line
                    line += f"  A: {_short(d.extracted_a)}  B: {_short(d.extracted_b)}  gold: {_short(d.gold)}"
                lines.append(line)
            if len(self.disagreements) > limit:
                lines.append(f"  … {len(self.disagreements) - limit} more")
        return "\n".join(lines)


def compare(a: str | Path, b: str | Path, *, variant: str | None = None, seed: int = 0,
            resamples: int = RESAMPLES, level: float = LEVEL) -> Comparison:
    """Compare records ``a`` and ``b`` (results JSON paths) on their shared questions' first samples.

    ``variant`` defaults to the task's primary one (flexible for text, plus for MBPP+, base for
    HumanEval). Raises UsageError naming the file for a missing or unreadable record or samples file,
    and for records of different tasks or splits, no shared question or an unknown variant."""
    rec_a, rows_a = _load(Path(a))
    rec_b, rows_b = _load(Path(b))
    task_a = (rec_a["task"]["name"], rec_a["task"]["split"])
    task_b = (rec_b["task"]["name"], rec_b["task"]["split"])
    if task_a != task_b:
        raise UsageError(f"{a} is {task_a[0]}/{task_a[1]} but {b} is {task_b[0]}/{task_b[1]}: "
                         "compare needs one task and split")
    shared = [qid for qid in rows_a if qid in rows_b]  # in A's question order
    if not shared:
        raise UsageError(f"{a} and {b} share no question")
    if variant is None:
        from latentbench.tasks import get_task

        variant = get_task(task_a[0]).primary_variant
    present = [v for v in rows_a[shared[0]]["correct"]
               if all(v in rows[q]["correct"] for rows in (rows_a, rows_b) for q in shared)]
    if variant not in present:
        raise UsageError(f"variant {variant!r} is not in the samples; they hold {', '.join(present) or 'none'}")

    hit_a = np.array([bool(rows_a[q]["correct"][variant]) for q in shared])
    hit_b = np.array([bool(rows_b[q]["correct"][variant]) for q in shared])
    b_count, c_count = int((hit_a & ~hit_b).sum()), int((~hit_a & hit_b).sum())
    disagreements = [
        Disagreement(q, "B" if hit_b[i] else "A", _extracted(rows_a[q], variant),
                     _extracted(rows_b[q], variant), rows_a[q].get("gold"))
        for i, q in enumerate(shared) if hit_a[i] != hit_b[i]
    ]
    return Comparison(
        a=str(a), b=str(b), label_a=_label(rec_a), label_b=_label(rec_b), task=task_a[0], split=task_a[1],
        answer_kind=str(rec_a["task"].get("answer_kind", "")), variant=variant, n=len(shared),
        only_a=len(rows_a) - len(shared), only_b=len(rows_b) - len(shared),
        accuracy_a=float(hit_a.mean()), accuracy_b=float(hit_b.mean()),
        difference=float(hit_b.mean() - hit_a.mean()),
        interval=paired_bootstrap(hit_a, hit_b, seed=seed, resamples=resamples, level=level),
        a_only_right=b_count, b_only_right=c_count, p_value=mcnemar_exact(b_count, c_count),
        seed=seed, resamples=resamples, level=level, disagreements=disagreements,
    )


def paired_bootstrap(hit_a: np.ndarray, hit_b: np.ndarray, *, seed: int = 0, resamples: int = RESAMPLES,
                     level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of mean(B) − mean(A) over questions resampled with replacement (one
    resample index serves both runs, which keeps the pairing)."""
    diff = hit_b.astype(float) - hit_a.astype(float)
    rng = np.random.default_rng(seed)
    means = np.concatenate([diff[rng.integers(0, len(diff), size=(min(CHUNK, resamples - start), len(diff)))]
                            .mean(axis=1) for start in range(0, resamples, CHUNK)])
    low, high = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(low), float(high)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of b successes in b + c trials at 1/2."""
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def _load(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The record and, from its samples file, each question's first-sample row (by id, in file order)."""
    record = _read_json(path, "results record")
    if not isinstance(record, dict) or not isinstance(record.get("task"), dict) \
            or not {"name", "split"} <= record["task"].keys():
        raise UsageError(f"{path}: not a results record (no task name and split)")
    if not isinstance(record.get("samples_file"), str) or not record["samples_file"]:
        raise UsageError(f"{path}: the record names no samples file (was it run with --no-log-samples?)")
    samples = path.parent / record["samples_file"]
    try:
        lines = samples.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or err
        raise UsageError(f"{samples}: cannot read the samples file of {path} ({reason})") from err
    firsts: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if row["sample"] == 0 and isinstance(row["correct"], dict):
                firsts[str(row["id"])] = row
        except (ValueError, KeyError, TypeError) as err:
            raise UsageError(f"{samples} line {number}: not a samples row ({err})") from err
    return record, firsts


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as err:
        raise UsageError(f"{path}: cannot read the {what} ({err.strerror or err})") from err
    except ValueError as err:
        raise UsageError(f"{path}: the {what} is not JSON ({err})") from err


def _label(record: dict[str, Any]) -> str:
    method = (record.get("method") or {}).get("name", "?")
    model = (record.get("model") or {}).get("id", "?")
    return f"{method} ({model})"


def _extracted(row: dict[str, Any], variant: str) -> Any:
    extracted = row.get("extracted") or {}
    return extracted.get(variant, extracted.get("program"))  # code rows keep one "program"


def _short(value: Any, width: int = 30) -> str:
    text = " ".join(str(value).split()) if value is not None else "-"
    return text if len(text) <= width else text[: width - 1] + "…"
