"""Methods: cot, latent-mas, latent-tree ... each yields Outcomes."""
