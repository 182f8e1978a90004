"""Orchestration layer."""
