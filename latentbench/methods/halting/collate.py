"""The collator: budgets and segment layout are decided here, from each segment's source, never in the model.

A batch row is ``[prompt (left padded)] [latent region] [answer (right padded)]``. The latent region has
the same width T in every row (the batch's largest total budget); a row's segments are consecutive runs
of ``latent_token_id`` from its start, each as long as its budget, and the slots after them are padding
(mask 0). With ``teacher`` items (training), a second sequence holds the prompt followed by the written
steps, and ``step_ends`` the position of each step's last token in it (the alignment targets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from latentbench.methods.halting.budgets import Source, segment_budget
from latentbench.methods.halting.config import SegmentConfig

IGNORE = -100  # label of positions without a loss


@dataclass
class Item:
    prompt_ids: list[int]
    sources: list[Source]  # one per segment, images first
    answer_ids: list[int] = field(default_factory=list)  # teacher-forced answer (training); empty at inference
    step_ids: list[list[int]] | None = None  # the written steps (training's alignment), one per step source


def collate(items: list[Item], config: SegmentConfig, latent_token_id: int, pad_id: int) -> dict[str, Any]:
    budgets = [[segment_budget(s.size, config) for s in it.sources] for it in items]
    totals = [sum(b) for b in budgets]
    n_prompt, width = max(len(it.prompt_ids) for it in items), max(totals, default=0)
    n_answer = max((len(it.answer_ids) for it in items), default=0)
    length = n_prompt + width + n_answer
    ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), length), dtype=torch.long)
    labels = torch.full((len(items), length), IGNORE, dtype=torch.long)
    segments: list[list[tuple[int, int, int]]] = []
    for row, (it, row_budgets) in enumerate(zip(items, budgets, strict=True)):
        start = n_prompt - len(it.prompt_ids)
        ids[row, start:n_prompt] = torch.tensor(it.prompt_ids, dtype=torch.long)
        mask[row, start:n_prompt] = 1
        pos, spans = n_prompt, []
        for index, budget in enumerate(row_budgets):
            ids[row, pos:pos + budget] = latent_token_id
            mask[row, pos:pos + budget] = 1
            spans.append((pos, pos + budget, index))
            pos += budget
        segments.append(spans)
        a = n_prompt + width
        if it.answer_ids:
            ids[row, a:a + len(it.answer_ids)] = torch.tensor(it.answer_ids, dtype=torch.long)
            mask[row, a:a + len(it.answer_ids)] = 1
            labels[row, a:a + len(it.answer_ids)] = ids[row, a:a + len(it.answer_ids)]
    most = max((len(b) for b in budgets), default=0)
    batch: dict[str, Any] = {
        "input_ids": ids, "attention_mask": mask, "labels": labels,
        "prompt_length": n_prompt, "latent_width": width,
        "latent_budgets": torch.tensor([b + [0] * (most - len(b)) for b in budgets], dtype=torch.long).view(len(items), most),
        "latent_segments": segments,
        "latent_image_counts": torch.tensor([sum(s.kind == "image" for s in it.sources) for it in items]),
        "latent_budget_total": torch.tensor(totals, dtype=torch.long),
    }
    if all(it.step_ids is not None for it in items) and items:
        batch.update(teacher_batch(items, pad_id))
    return batch


def segment_budgets(batch: dict[str, Any]) -> list[list[int]]:
    """[B][M] each row's segment budgets, as laid out (no padding entries)."""
    return [[end - start for start, end, _ in spans] for spans in batch["latent_segments"]]


def teacher_batch(items: list[Item], pad_id: int) -> dict[str, Any]:
    """Prompt + written steps, left padded, and each step's last position (-1 for image segments)."""
    rows, ends = [], []
    for it in items:
        seq, row_ends, steps = list(it.prompt_ids), [], iter(it.step_ids or [])
        for source in it.sources:
            if source.kind == "image":
                row_ends.append(-1)
                continue
            seq += next(steps)
            row_ends.append(len(seq) - 1)
        rows.append(seq)
        ends.append(row_ends)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    shifted = [[e + width - len(r) if e >= 0 else -1 for e in row] for row, r in zip(ends, rows, strict=True)]
    return {"teacher_ids": ids, "teacher_mask": mask, "step_ends": shifted}
