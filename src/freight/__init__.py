"""Freight: a self-hosted batch inference service."""

__version__ = "0.1.0"
