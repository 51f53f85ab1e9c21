"""AutoJudge's mined labels: which rejected mismatches would have changed the answer.

For a rejected mismatch at text position i, the draft token replaces the emitted one: the prefix is the
trace's first i tokens and the draft token, and the target continues greedily from there within the
same text budget. The mismatch is *important* when the answer extracted from that text differs from
the trace's answer; an unimportant one could have been accepted for free. Each continuation costs a
full decode, so only up to ``limit`` rejected mismatches per question are mined, drawn at random.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from latentbench.models.latent import greedy_decode, pad_left

if TYPE_CHECKING:
    from latentbench.methods.spd.decode import Trace
    from latentbench.models import LoadedModel
    from latentbench.tasks import Example, Task
    from latentbench.tasks.task import Score


def mine(lm: LoadedModel, task: Task, example: Example, prompt: list[int], trace: Trace, score: Score, *,
         limit: int, max_new_tokens: int, generator: torch.Generator, batch_size: int = 8
         ) -> dict[int, tuple[bool, str | None]]:
    """Mismatch index (in ``trace.mismatches``) -> (important, the continuation's extracted answer)."""
    from latentbench.methods.generation import eos_token_ids

    rejected = [i for i, s in enumerate(trace.mismatches) if not s["accepted"]]
    if not rejected or limit < 1:
        return {}
    order = torch.randperm(len(rejected), generator=generator)[:limit].sort().values.tolist()
    chosen = [rejected[k] for k in order]
    variant = task.primary_variant
    answer = score.extracted[variant]
    eos, out = eos_token_ids(lm), {}
    for start in range(0, len(chosen), batch_size):
        part = chosen[start:start + batch_size]
        heads = [trace.tokens[:trace.mismatches[i]["position"]] + [trace.mismatches[i]["draft_token"]] for i in part]
        ids, mask = pad_left([prompt + h for h in heads], lm.tokenizer.pad_token_id, lm.device)
        budget = max_new_tokens - min(len(h) for h in heads)
        continued, _ = greedy_decode(lm, None, ids, budget, eos, prompt_mask=mask) if budget > 0 else ([[]] * len(part), 0)
        for i, head, tail in zip(part, heads, continued, strict=True):
            text = lm.tokenizer.decode((head + tail)[:max_new_tokens], skip_special_tokens=True)
            mined = task.score(example, text).extracted[variant]
            out[i] = (mined != answer, mined)
    return out
