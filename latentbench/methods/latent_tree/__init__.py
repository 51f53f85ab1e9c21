"""``latent-tree``: branching latent multi-agent reasoning, its dataset records and replay."""
