"""humr.data."""
