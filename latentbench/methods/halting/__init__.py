"""``halting``: chain-of-thought steps replaced by budgeted latent segments, ended early by a stop head (see docs/halting.md)."""
