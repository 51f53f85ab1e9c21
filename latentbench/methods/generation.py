"""Batched text generation with a chat template: the decoding every text-producing method shares."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from latentbench.models import LoadedModel


def chat_text(lm: LoadedModel, user: str, system: str | None = None) -> str:
    """The prompt as the model sees it: the tokenizer's chat template, ready for the assistant's turn."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    if lm.tokenizer.chat_template:
        return lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages) + "\n\n"


def rendered_system_prompt(lm: LoadedModel, system: str | None) -> str:
    """What the chat template puts before the user's message for ``system`` (None: the template's own
    default, e.g. Qwen's "You are Qwen, ..."): the system turn exactly as the model reads it."""
    marker = "\x00USER\x00"  # text no template alters, found again in the rendering
    rendered = chat_text(lm, marker, system)
    return rendered[:rendered.index(marker)]


def chat_template_sha256(lm: LoadedModel) -> str | None:
    """sha256 of the tokenizer's chat template (a dict of named templates as sorted JSON); None without one."""
    template = lm.tokenizer.chat_template
    if not template:
        return None
    text = template if isinstance(template, str) else json.dumps(template, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Generation:
    texts: list[list[str]]  # [prompt][sample]
    tokens: list[int]  # generated text tokens per prompt, all samples, EOS excluded
    forward_passes: int  # decoder calls for the whole batch (prefill + one per new position)
    truncated: list[list[bool]] = field(default_factory=list)  # [prompt][sample]: budget reached without EOS


def _stops(new_tokens: torch.Tensor, eos_ids: set[int]) -> list[tuple[int, bool]]:
    """Per row: (text tokens up to its first EOS, excluded; whether it ran out of budget with no EOS at all)."""
    out = []
    for row in new_tokens.tolist():
        first = next((i for i, tok in enumerate(row) if tok in eos_ids), None)
        out.append((len(row), True) if first is None else (first, False))
    return out


def eos_token_ids(lm: LoadedModel) -> set[int]:
    ids = lm.model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if lm.tokenizer.eos_token_id is not None:
        ids.add(lm.tokenizer.eos_token_id)
    return ids


def generate(lm: LoadedModel, prompts: list[str], *, max_new_tokens: int, temperature: float = 0.0,
             top_p: float = 1.0, num_samples: int = 1) -> Generation:
    """Greedy when temperature is 0; otherwise sampling (the caller seeds torch)."""
    import torch

    enc = lm.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(lm.device)
    sampling = temperature > 0
    with torch.inference_mode():
        out = lm.model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=sampling, num_return_sequences=num_samples,
            temperature=temperature if sampling else None, top_p=top_p if sampling else None, top_k=None,
            pad_token_id=lm.tokenizer.pad_token_id,
        )
    new = out[:, enc["input_ids"].shape[1]:]  # [batch * samples, new_len]
    stops = _stops(new, eos_token_ids(lm))  # a row with no EOS ran to max_new_tokens (generate stops only so)
    texts = lm.tokenizer.batch_decode(new, skip_special_tokens=True)
    rows = [range(i * num_samples, (i + 1) * num_samples) for i in range(len(prompts))]
    return Generation([[texts[j] for j in r] for r in rows], [sum(stops[j][0] for j in r) for r in rows],
                      forward_passes=new.shape[1], truncated=[[stops[j][1] for j in r] for r in rows])
