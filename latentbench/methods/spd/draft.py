"""The two sides of speculative decoding: the target and its draft, each a transformer body, an LM head and
a cache of its own.

The embedded pair is self-speculative (LayerSkip, Draft&Verify): the draft is the target exited early
after its first L layers, through the target's own final norm and LM head. It is a view of the target
(``_early_exit``): the same layer modules, nothing copied. A separate draft model must share the
target's tokenizer, since draft tokens are checked by id.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from latentbench.errors import UsageError
from latentbench.models.latent import output_cache, run_body

if TYPE_CHECKING:
    from transformers import DynamicCache

    from latentbench.models import LoadedModel


@dataclass
class Side:
    """One side (target or draft): ``body`` maps tokens to last-layer hidden states (final norm applied),
    ``head`` maps those to logits. Two models of one tokenizer may pad their vocabularies to different
    sizes; ``decode`` compares ids, and cuts both distributions to the shorter one when sampling."""

    body: torch.nn.Module
    head: torch.nn.Module

    @classmethod
    def of(cls, lm: LoadedModel) -> Side:
        return cls(lm.model.base_model, lm.model.get_output_embeddings())

    def new_cache(self) -> DynamicCache:
        from transformers import DynamicCache

        return DynamicCache(config=self.body.config)

    def forward(self, cache: DynamicCache, mask: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, DynamicCache]:
        """Append ``ids`` [batch, n] to ``cache`` (``mask`` covers cache + new); hidden states [batch, n, H]."""
        out = run_body(self.body, mask, cache=cache, input_ids=ids)
        return out.last_hidden_state, output_cache(out)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden).float()


def _early_exit(body: torch.nn.Module, layers: int) -> torch.nn.Module:
    """The body running only its first ``layers`` decoder layers (then its final norm). A shallow copy with
    its own config: the forward loops over ``layers[:config.num_hidden_layers]``, so the layer modules are
    shared with the full body and the draft's cache holds only its layers."""
    total = body.config.num_hidden_layers
    if not 1 <= layers < total:
        raise UsageError(f"draft=layers:{layers}: the target has {total} layers; L must be in [1, {total - 1}]")
    view = copy.copy(body)
    view.config = copy.copy(body.config)
    view.config.num_hidden_layers = layers
    if getattr(view.config, "layer_types", None):
        view.config.layer_types = list(body.config.layer_types[:layers])
    return view


def same_tokenizer(a: Any, b: Any) -> bool:
    return a.get_vocab() == b.get_vocab() and a.eos_token_id == b.eos_token_id


def make_draft(target: LoadedModel, draft: str, draft_model: LoadedModel | None = None) -> Side:
    """The draft side for ``draft`` (``layers:L``, or ``model`` with the loaded ``draft_model``)."""
    if draft.startswith("layers:"):
        return Side(_early_exit(target.model.base_model, int(draft.split(":")[1])),
                    target.model.get_output_embeddings())
    if draft_model is None:
        raise UsageError("draft=model needs --draft-model")
    if not same_tokenizer(target.tokenizer, draft_model.tokenizer):
        raise UsageError(f"--draft-model {draft_model.model_id}: its tokenizer differs from the target "
                         f"{target.model_id}'s; speculative decoding checks draft tokens by id, so both must share one")
    return Side.of(draft_model)
