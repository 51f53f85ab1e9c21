"""Batched text generation with a chat template: the decoding every text-producing method shares."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class Generation:
    texts: list[list[str]]  # [prompt][sample]
    tokens: list[int]  # generated text tokens per prompt, all samples, EOS excluded
    forward_passes: int  # decoder calls for the whole batch (prefill + one per new position)


def generated_lengths(new_tokens: torch.Tensor, eos_ids: set[int]) -> list[int]:
    """Text tokens each row produced: up to its first EOS (excluded); rows that never stop count fully."""
    lengths = []
    for row in new_tokens.tolist():
        n = len(row)
        for i, tok in enumerate(row):
            if tok in eos_ids:
                n = i
                break
        lengths.append(n)
    return lengths


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
    lengths = generated_lengths(new, eos_token_ids(lm))
    texts = lm.tokenizer.batch_decode(new, skip_special_tokens=True)
    per_prompt = [texts[i * num_samples:(i + 1) * num_samples] for i in range(len(prompts))]
    tokens = [sum(lengths[i * num_samples:(i + 1) * num_samples]) for i in range(len(prompts))]
    return Generation(per_prompt, tokens, forward_passes=new.shape[1])
