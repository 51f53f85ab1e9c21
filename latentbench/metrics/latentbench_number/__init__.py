"""The latentbench_number metric module (loaded by path with evaluate.load; see latentbench.metrics)."""
