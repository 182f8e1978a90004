"""Ingestion layer."""
