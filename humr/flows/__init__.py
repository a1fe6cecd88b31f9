"""humr.flows."""
