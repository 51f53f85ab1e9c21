"""Loading causal LMs (embedded default, Hub id, local path) and the tensor operations latent methods share."""

from latentbench.models.loading import DEFAULT_MODEL, EMBEDDED, LoadedModel, load_model
from latentbench.models.tiny import tiny_model

__all__ = ["DEFAULT_MODEL", "EMBEDDED", "LoadedModel", "load_model", "tiny_model"]
