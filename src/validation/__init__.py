"""Validation layer."""
