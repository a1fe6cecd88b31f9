"""humr.training."""
