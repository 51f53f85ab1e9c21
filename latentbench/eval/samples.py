"""The samples file: one JSON line per scored output, appended as each question finishes.

It is the run's journal as well as its per-question record: an interrupted ``eval`` re-run with the
same settings reads the questions already scored from it and runs only the rest; the results record
is always computed from the file, so a resumed run reports exactly what an uninterrupted one would
(wall time summed over sessions).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from latentbench.methods.base import Outcome
    from latentbench.tasks import Score

log = logging.getLogger(__name__)


def sample_rows(outcome: Outcome, scores: list[Score], session: str, time_s: float) -> list[dict[str, Any]]:
    """One row per output of ``outcome``; question-level fields repeat on each row."""
    batch = outcome.artifacts.get("batch")
    cut = outcome.truncated or [None] * len(outcome.outputs)
    return [{"id": outcome.example.id, "task_id": outcome.example.task_id, "sample": i, "prompt": outcome.prompt,
             "agent_prompts": outcome.agent_prompts, "output": text, "truncated": cut[i],
             "extracted": s.extracted, "gold": outcome.example.gold, "correct": s.correct, "detail": s.detail,
             "generated_tokens": outcome.generated_tokens, "forward_passes": outcome.forward_passes,
             "batch": None if batch is None else f"{session}:{batch}", "latent_steps": outcome.latent_steps,
             "latent_budget": outcome.latent_budget, "metrics": outcome.metrics, "time_s": round(time_s, 4)}
            for i, (text, s) in enumerate(zip(outcome.outputs, scores, strict=True))]


def share_batch_time(questions: list[list[dict[str, Any]]]) -> None:
    """A batch's questions arrive together, the first carrying the whole batch's time: give each question of
    a batch (rows sharing ``batch``) an equal share, so ``time_s`` is per question and still sums to the
    wall time."""
    groups: dict[str, list[list[dict[str, Any]]]] = {}
    for rows in questions:
        if rows and rows[0].get("batch") is not None:
            groups.setdefault(rows[0]["batch"], []).append(rows)
    for members in groups.values():
        share = round(sum(rows[0]["time_s"] for rows in members) / len(members), 4)
        for rows in members:
            for row in rows:
                row["time_s"] = share


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
        fh.flush()


def read_questions(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows by question id, complete questions only (a torn last line from a crash is dropped)."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    if not path.exists():
        return by_id
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s:%d: unreadable line (an interrupted write?) ignored", path, number)
            continue
        by_id.setdefault(row["id"], []).append(row)
    return by_id


def rewrite(path: Path, questions: list[list[dict[str, Any]]]) -> None:
    """The samples file holding exactly ``questions`` (in question order), atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for rows in questions for r in rows))
    tmp.replace(path)
