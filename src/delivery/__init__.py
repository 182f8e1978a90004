"""Delivery layer."""
