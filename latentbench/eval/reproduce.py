"""``latentbench reproduce RESULTS.json``: rerun a results record from what it records and compare
per question with its samples file.

The request is rebuilt from the record itself (task, split, limit, seed, model, dtype, device, method
and its full config), so records made before the ``command`` field existed reproduce too. Under greedy
decoding the predictions must be identical; a different prediction is a failure. Output texts that
differ while the prediction agrees are reported apart: they point at float rounding on a near-tie
(e.g. a question decoded in a different batch under ``--limit``).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentbench.errors import UsageError
from latentbench.eval.evaluator import EvalRequest, evaluate
from latentbench.eval.samples import read_questions


@dataclass
class Reproduction:
    original: Path
    rerun: Path
    questions: int
    different: list[dict[str, Any]] = field(default_factory=list)  # prediction differs
    text_only: list[str] = field(default_factory=list)  # ids whose text differs, prediction equal

    @property
    def ok(self) -> bool:
        return not self.different

    def render(self) -> str:
        head = (f"reproduced {self.questions - len(self.different)}/{self.questions} questions of {self.original.name} "
                f"with identical predictions (rerun: {self.rerun})")
        lines = [head]
        if self.text_only:
            lines.append(f"{len(self.text_only)} with the same prediction but different text: "
                         f"{', '.join(self.text_only[:10])}")
        for d in self.different:
            lines.append(f"DIFF {d['id']}: recorded {d['recorded']!r}, now {d['now']!r} (gold {d['gold']!r})")
        return "\n".join(lines)


def load_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UsageError(f"{path}: not a readable results record ({type(err).__name__})") from None
    if not isinstance(record, dict) or "task" not in record or "method" not in record:
        raise UsageError(f"{path}: not a latentbench results record (expected task, method, model fields)")
    return record


def request_from_record(record: dict[str, Any], *, limit: int | None = None, data_dir: str | None = None,
                        output_path: str = "results") -> EvalRequest:
    """The EvalRequest that made ``record`` (its first ``limit`` questions only, if given)."""
    recorded = record.get("limit")
    if limit is not None and recorded is not None:
        limit = min(limit, recorded)
    return EvalRequest(task=record["task"]["name"], split=record["task"]["split"], limit=limit or recorded,
                       seed=record["seed"], model=record["model"]["id"], dtype=record["model"].get("dtype", "float32"),
                       device=record["model"].get("device", "cpu"), method=record["method"]["name"],
                       method_args=dict(record["method"]["config"]), data_dir=data_dir, output_path=output_path)


def reproduce(results: str | Path, *, limit: int | None = None, data_dir: str | None = None,
              output_path: str | None = None, show_progress: bool = True,
              unsafe_no_sandbox: bool = False) -> Reproduction:
    path = Path(results)
    record = load_record(path)
    samples = path.parent / (record.get("samples_file") or "")
    if not record.get("samples_file") or not samples.is_file():
        raise UsageError(f"{path}: its samples file {samples.name or '(none recorded)'} is not beside it; "
                         "reproduce compares per question against it")
    recorded = read_questions(samples)
    out = output_path or tempfile.mkdtemp(prefix="latentbench-reproduce-")
    req = request_from_record(record, limit=limit, data_dir=data_dir, output_path=out)
    req.show_progress, req.unsafe_no_sandbox = show_progress, unsafe_no_sandbox  # never implied by the record
    new_record, new_path = evaluate(req)
    sha = record["model"].get("sha256")
    if sha and new_record["model"].get("sha256") and sha != new_record["model"]["sha256"]:
        raise UsageError(f"{path}: made with weights {sha[:12]}…, but {req.model} now has "
                         f"{new_record['model']['sha256'][:12]}…")
    rerun = read_questions(new_path.parent / new_record["samples_file"])
    result = Reproduction(path, new_path, len(rerun))
    for qid, rows in rerun.items():
        if qid not in recorded:
            raise UsageError(f"{samples}: has no question {qid} (a different question set?)")
        before, now = recorded[qid][0], rows[0]
        if before["extracted"] != now["extracted"] or before["correct"] != now["correct"]:
            result.different.append({"id": qid, "recorded": before["extracted"], "now": now["extracted"],
                                     "gold": before["gold"]})
        elif before["output"] != now["output"]:
            result.text_only.append(qid)
    return result
