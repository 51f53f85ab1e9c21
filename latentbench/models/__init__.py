"""Loading causal LMs (embedded models, Hub id, local path) and the tensor operations latent methods share."""

from latentbench.models.loading import DEFAULT_MODEL, EMBEDDED, LoadedModel, load_model
from latentbench.models.tiny import TOKENIZER_MODEL, tiny_model

__all__ = ["DEFAULT_MODEL", "EMBEDDED", "LoadedModel", "load_model", "TOKENIZER_MODEL", "tiny_model"]
