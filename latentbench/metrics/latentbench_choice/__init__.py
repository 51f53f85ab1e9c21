"""The latentbench_choice metric module (loaded by path with evaluate.load; see latentbench.metrics)."""
