"""humr.losses."""
