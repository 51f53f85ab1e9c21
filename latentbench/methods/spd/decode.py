"""Batched speculative decoding with a mismatch judge: the one algorithm ``spd``, its traces, its mined
labels and the judge's GRPO rollouts all run.

Per verification step, for every row of the batch: the draft proposes γ tokens (γ draft forwards); the
target reads the last emitted token and the γ drafts in one forward; walking the drafts in order, a
draft token equal to the target's (greedy), or passing the rejection test ``u < p(d)/q(d)`` (sampling),
is accepted; at a *mismatch* the judge decides: accepted, the draft token stays and the walk goes on
(the target's later predictions were computed after it, so they remain valid); rejected, the target's
token is emitted (greedy: its argmax; sampling: a draw from ``max(0, p - q)``) and the step ends. When
all γ are accepted the target's next token is a bonus. With the judge rejecting every mismatch this is
standard speculative decoding: under greedy verification the output equals target-only greedy decoding.

Rows advance by different amounts, so each step leaves rejected draft positions in the caches: they
are masked out, then every cache is *compacted* (each row's valid positions gathered and right-aligned,
as ``pad_left`` lays out prompts): stored keys already carry their rotary positions, and positions of
new tokens come from the mask, so compaction changes no value. Finished rows leave the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from latentbench.models.latent import pad_left

if TYPE_CHECKING:
    from transformers import DynamicCache

    from latentbench.methods.spd.draft import Side

# features [n, F] of n mismatches -> (judge scores [n] or None, accept [n] bool)
Decide = Callable[[torch.Tensor], tuple[torch.Tensor | None, torch.Tensor]]


def reject_all(features: torch.Tensor) -> tuple[None, torch.Tensor]:
    """judge=none: standard speculative decoding."""
    return None, torch.zeros(len(features), dtype=torch.bool)


def accept_all(features: torch.Tensor) -> tuple[None, torch.Tensor]:
    """judge=always: every draft token stands."""
    return None, torch.ones(len(features), dtype=torch.bool)


@dataclass
class Trace:
    """One row's decode: the emitted tokens and one ``steps`` row per verified draft position."""

    tokens: list[int] = field(default_factory=list)  # emitted, EOS excluded
    steps: list[dict[str, Any]] = field(default_factory=list)  # the spd-trace ``steps`` rows (no ids)
    features: list[torch.Tensor] = field(default_factory=list)  # [F] per mismatch, in order of ``steps``
    verifications: int = 0  # target forwards after the prefill
    draft_forwards: int = 0
    proposed: int = 0  # draft tokens proposed (γ per verification)
    truncated: bool = False  # the budget ran out before EOS
    done: bool = False

    @property
    def mismatches(self) -> list[dict[str, Any]]:
        return [s for s in self.steps if not s["match"]]

    def drop_steps_after(self, end: int) -> None:
        """Forget verified positions >= ``end`` (drafts walked past the EOS or the budget) and their features."""
        kept = [s for s in self.steps if s["position"] < end]
        self.features = self.features[: sum(not s["match"] for s in kept)]  # features follow the steps' order
        self.steps = kept

    @property
    def accepted_drafts(self) -> int:
        return sum(s["accepted"] for s in self.steps)

    def metrics(self) -> dict[str, float]:
        """The method's metrics for this trace (the evaluator averages them over questions):
        acceptance rate (accepted draft tokens / proposed), mean accepted length (tokens emitted per
        verification: 1 + accepted / verifications), target forwards per generated token, and the share
        of mismatches the judge accepted (left out without mismatches)."""
        steps = max(self.verifications, 1)
        out = {"acceptance_rate": self.accepted_drafts / max(self.proposed, 1),
               "mean_accepted_length": 1 + self.accepted_drafts / steps,
               "target_forwards_per_token": self.verifications / max(len(self.tokens), 1),
               "mismatches_per_verification": len(self.mismatches) / steps}
        if self.mismatches:
            out["judge_accept_share"] = sum(s["accepted"] for s in self.mismatches) / len(self.mismatches)
        return out


@dataclass
class Sampling:
    temperature: float = 0.0
    top_p: float = 1.0
    generator: torch.Generator | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax at the temperature, cut to the top-p nucleus and renormalised."""
        probs = torch.softmax(logits / self.temperature, dim=-1)
        if self.top_p < 1:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            outside = sorted_probs.cumsum(-1) - sorted_probs >= self.top_p  # mass before it already >= p
            probs = probs.scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))
            probs = probs / probs.sum(-1, keepdim=True)
        return probs

    def draw(self, probs: torch.Tensor) -> torch.Tensor:
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)

    def choose(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[b, V] logits -> (tokens [b], their distribution [b, V] when sampling)."""
        if self.greedy:
            return logits.argmax(-1), None
        probs = self.probs(logits)
        return self.draw(probs), probs


def compact(cache: DynamicCache, mask: torch.Tensor) -> tuple[DynamicCache, torch.Tensor]:
    """Each row's unmasked positions, in order, right-aligned to the longest row (pads in front, mask 0)."""
    from transformers import DynamicCache

    width = int(mask.sum(1).max())
    index = torch.argsort(mask, dim=1, stable=True)[:, mask.shape[1] - width:]  # pads first, then valid in order
    out = DynamicCache()
    for layer_index, layer in enumerate(cache.layers):
        gather = index[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3])
        out.update(layer.keys.gather(2, gather), layer.values.gather(2, gather), layer_index)
    return out, mask.gather(1, index)


def _select(cache: DynamicCache, mask: torch.Tensor, rows: torch.Tensor) -> tuple[DynamicCache, torch.Tensor]:
    from transformers import DynamicCache

    out = DynamicCache()
    for layer_index, layer in enumerate(cache.layers):
        out.update(layer.keys[rows], layer.values[rows], layer_index)
    return out, mask[rows]


@torch.inference_mode()
def speculative_decode(target: Side, draft: Side, embeddings: torch.nn.Module, prompts: list[list[int]], *,
                       gamma: int, max_new_tokens: int, eos_ids: set[int], decide: Decide = reject_all,
                       sampling: Sampling | None = None, pad_id: int = 0) -> list[Trace]:
    """Decode every prompt (token ids, the chat template applied) speculatively; one ``Trace`` per prompt.
    ``embeddings`` is the target's input embedding (the judge's token features)."""
    sampling = sampling or Sampling()
    if any(len(p) < 2 for p in prompts):
        raise ValueError("speculative_decode needs prompts of at least 2 tokens")
    device = next(embeddings.parameters()).device
    traces = [Trace() for _ in prompts]
    ids, mask = pad_left([p[:-1] for p in prompts], pad_id, device)  # the last prompt token is fed as `cur`
    tcache, dcache = target.new_cache(), draft.new_cache()
    _, tcache = target.forward(tcache, mask, ids)
    _, dcache = draft.forward(dcache, mask, ids)
    tmask, dmask = mask, mask.clone()
    cur = torch.tensor([p[-1] for p in prompts], device=device)
    pending = torch.full_like(cur, pad_id)  # a row's last accepted draft, not yet read by the draft model
    has_pending = torch.zeros_like(cur, dtype=torch.bool)
    rows = list(range(len(prompts)))  # batch row -> prompt index
    while rows:
        b = len(rows)
        # -- draft: γ tokens (the first forward also reads a pending accepted draft) ------------------------
        dmask = torch.cat([dmask, torch.stack([has_pending.long(), torch.ones_like(cur)], 1)], 1)
        hidden, dcache = draft.forward(dcache, dmask, torch.stack([pending, cur], 1))
        h = hidden[:, -1]
        drafts, draft_probs, draft_hidden = [], [], []
        for j in range(gamma):
            tok, probs = sampling.choose(draft.logits(h))
            drafts.append(tok)
            draft_probs.append(probs)
            draft_hidden.append(h)
            if j < gamma - 1:
                dmask = torch.cat([dmask, torch.ones_like(cur)[:, None]], 1)
                hidden, dcache = draft.forward(dcache, dmask, tok[:, None])
                h = hidden[:, -1]
        proposed = torch.stack(drafts, 1)  # [b, γ]
        # -- verify: the target reads cur and the γ drafts in one forward ----------------------------------
        tmask = torch.cat([tmask, torch.ones(b, gamma + 1, dtype=tmask.dtype, device=device)], 1)
        target_hidden, tcache = target.forward(tcache, tmask, torch.cat([cur[:, None], proposed], 1))
        logits = target.logits(target_hidden)  # [b, γ + 1, V]: position j predicts draft j
        match, fix, bonus = _verify(logits, proposed, draft_probs, sampling)
        # -- walk the drafts in lockstep over rows; the judge sees each step's mismatches together ------------
        walking = torch.ones(b, dtype=torch.bool, device=device)
        accepted = torch.zeros(b, dtype=torch.long, device=device)
        emitted_at = [[] for _ in range(b)]  # tokens each row emits this step
        for j in range(gamma):
            rows_here = walking.nonzero().flatten().tolist()
            missed = [r for r in rows_here if not match[r, j]]
            scores, verdicts = {}, {}
            if missed:
                idx = torch.tensor(missed, device=device)
                feats = torch.cat([target_hidden[idx, j], draft_hidden[j][idx], embeddings(proposed[idx, j]),
                                   embeddings(fix[idx, j])], -1).float()
                score, accept = decide(feats)
                for k, r in enumerate(missed):
                    scores[r] = None if score is None else float(score[k])
                    verdicts[r] = bool(accept[k])
                    traces[rows[r]].features.append(feats[k].cpu())
            for r in rows_here:
                ok = bool(match[r, j]) or verdicts.get(r, False)
                token = int(proposed[r, j]) if ok else int(fix[r, j])
                trace = traces[rows[r]]
                trace.steps.append({"step": trace.verifications, "position": len(trace.tokens) + j,
                                    "draft_token": int(proposed[r, j]),
                                    "target_token": int(proposed[r, j]) if match[r, j] else int(fix[r, j]),
                                    "match": bool(match[r, j]), "judge_score": scores.get(r), "accepted": ok,
                                    "emitted_token": token})
                emitted_at[r].append(token)
                if ok:
                    accepted[r] += 1
                else:
                    walking[r] = False
        for r in walking.nonzero().flatten().tolist():
            emitted_at[r].append(int(bonus[r]))
        # -- emit, then keep only what each row accepted in both caches -------------------------------------
        for r in range(b):
            trace = traces[rows[r]]
            trace.verifications += 1
            trace.draft_forwards += gamma
            trace.proposed += gamma
            for token in emitted_at[r]:
                if token in eos_ids:
                    trace.done = True
                    break
                trace.tokens.append(token)
                if len(trace.tokens) >= max_new_tokens:
                    trace.done = trace.truncated = True
                    break
            if trace.done:
                trace.drop_steps_after(len(trace.tokens) + (0 if trace.truncated else 1))  # past EOS or budget
        steps = torch.arange(1, gamma + 1, device=device)
        tmask[:, -gamma:] = (steps[None] <= accepted[:, None]).to(tmask.dtype)
        if gamma > 1:
            dmask[:, -(gamma - 1):] = (steps[None, :-1] <= accepted[:, None]).to(dmask.dtype)
        has_pending = accepted == gamma
        pending = torch.where(has_pending, proposed[:, -1], torch.full_like(cur, pad_id))
        cur = torch.tensor([toks[-1] for toks in emitted_at], device=device)
        keep = [r for r in range(b) if not traces[rows[r]].done]
        if len(keep) < b:
            if not keep:
                break
            index = torch.tensor(keep, device=device)
            tcache, tmask = _select(tcache, tmask, index)
            dcache, dmask = _select(dcache, dmask, index)
            cur, pending, has_pending = cur[index], pending[index], has_pending[index]
            rows = [rows[r] for r in keep]
        tcache, tmask = compact(tcache, tmask)
        dcache, dmask = compact(dcache, dmask)
    return traces


def _verify(logits: torch.Tensor, proposed: torch.Tensor, draft_probs: list[torch.Tensor | None],
            sampling: Sampling) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per draft position: whether the target agrees ([b, γ] bool), the target's token where it does not
    ([b, γ]), and the bonus token after all γ ([b])."""
    gamma = proposed.shape[1]
    if sampling.greedy:
        best = logits.argmax(-1)
        return proposed == best[:, :gamma], best[:, :gamma], best[:, gamma]
    q = torch.stack(draft_probs, 1)  # [b, γ, V]
    width = min(logits.shape[-1], q.shape[-1])  # padded vocabularies of two models may differ in size
    q = q[..., :width] / q[..., :width].sum(-1, keepdim=True)
    p = sampling.probs(logits[..., :width])  # [b, γ + 1, V]
    p_d = p[:, :gamma].gather(-1, proposed[..., None]).squeeze(-1)
    q_d = q.gather(-1, proposed[..., None]).squeeze(-1)
    u = torch.rand(p_d.shape, generator=sampling.generator, device=p.device)
    match = u * q_d < p_d  # u < min(1, p/q)
    residual = (p[:, :gamma] - q).clamp_min(0)
    residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, p[:, :gamma])  # p == q: draw from p
    fix = sampling.draw((residual / residual.sum(-1, keepdim=True)).flatten(0, 1)).view(proposed.shape)
    return match, fix, sampling.draw(p[:, gamma])


def prompt_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
