"""humr.eval."""
