"""humr.model."""
