"""Monitoring layer."""
