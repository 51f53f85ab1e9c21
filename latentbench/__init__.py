"""latentbench: datasets and benchmarks for latent reasoning."""
__version__ = "0.1.0"
