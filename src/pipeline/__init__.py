"""Pipeline layer."""
