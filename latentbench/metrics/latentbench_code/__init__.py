"""The latentbench_code metric module (loaded by path with evaluate.load; see latentbench.metrics)."""
