"""humr.bodies."""
