"""What ``latent-mas`` adds to ``models/latent.py``: the reference's agent caches (a fresh turn per agent,
then its latent steps), sampled decoding over paths, and the no-realignment map.

Sampling draws from torch's global generator, which the evaluator seeds with the run's ``--seed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from latentbench.methods.generation import eos_token_ids
from latentbench.models.latent import Paths, Realignment, greedy_decode, latent_steps, pad_left, prefill

if TYPE_CHECKING:
    from latentbench.models import LoadedModel


def identity_realignment(lm: LoadedModel) -> Realignment:
    """The reference without --latent_space_realign: W_a = I, the result still rescaled to the mean
    input-embedding norm (its models.py builds an identity matrix and always rescales)."""
    w_in = lm.model.get_input_embeddings().weight.detach()  # [vocab, hidden]
    eye = torch.eye(w_in.shape[1], dtype=lm.model.dtype, device=w_in.device)
    return Realignment(eye, float(w_in.double().norm(dim=-1).mean()))


class NoiseLatents(Realignment):
    """The ``control=noise`` map: ignores the hidden state and returns a random direction at the norm a
    real latent input gets (drawn from torch's global generator, which the run's --seed seeds)."""

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(hidden.shape, dtype=self.matrix.dtype, device=hidden.device)
        return noise * (self.target_norm / noise.norm(dim=-1, keepdim=True).clamp_min(1e-6))


def controlled(realign: Realignment, control: str) -> Realignment:
    """The latent map a config's ``control`` asks for (off and none: the real one)."""
    return NoiseLatents(realign.matrix, realign.target_norm) if control == "noise" else realign


def agent_caches(lm: LoadedModel, turns: list[list[list[int]]], steps: int,
                 realign: Realignment, keep_turns: bool = False) -> tuple[Paths | None, int]:
    """protocol=latentmas: each agent's fresh turn (``turns[row][agent]``, token ids) is appended to the
    previous agents' cache, then the agent runs ``steps`` latent steps. Returns the cache in front of the
    judger and the forward calls. None without latent steps: the reference then gives the judger no
    cache (its methods/latent_mas.py:158), so the agents' turns are not run at all; ``keep_turns``
    (control=none) keeps them."""
    if steps == 0 and not keep_turns:
        return None, 0
    paths, forwards = None, 0
    for agent in range(len(turns[0])):
        ids, mask = pad_left([row[agent] for row in turns], lm.tokenizer.pad_token_id, lm.device)
        paths = prefill(lm, ids, mask, paths=paths)  # left padded per turn; positions from the mask
        paths, _, _ = latent_steps(lm, paths, steps, realign)
        forwards += 1 + steps
    return paths, forwards


def sample_token(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """[batch, vocab] logits -> [batch] token ids, sampled at ``temperature`` from the top-p nucleus."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs >= top_p  # mass before it already reaches top_p
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))
    return torch.multinomial(probs, 1).squeeze(-1)


@torch.inference_mode()
def decode(lm: LoadedModel, paths: Paths | None, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
           max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0) -> tuple[list[list[int]], int]:
    """Prefill the prompt [batch, n] on ``paths`` (None: no cache in front), then decode each row until
    EOS: greedy at temperature 0, else sampled (``greedy_decode`` with a sampler). Returns the new tokens per row
    (EOS excluded) and the forward calls."""
    choose = None if temperature <= 0 else (lambda logits: sample_token(logits, temperature, top_p))
    return greedy_decode(lm, paths, prompt_ids, max_new_tokens, eos_token_ids(lm), prompt_mask, choose)
